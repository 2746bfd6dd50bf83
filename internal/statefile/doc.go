// Package statefile keeps a small state file that more than one process
// may change (the guard's blocker and `killswitch execblock block`, the
// guard and `killswitch cutoff release`): changes are made under a lock,
// and a file is replaced atomically and durably, so that a crash leaves
// the old content or the new, never a torn file.
package statefile
