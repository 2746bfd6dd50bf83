// Package testenv holds the helpers that decide whether a privileged test
// may run here: it skips with a reason, or fails under KILLSWITCH_TEST_STRICT=1
// (CI sets it), so that a missing privilege never passes silently in CI.
package testenv
