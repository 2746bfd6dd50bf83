// Package execblock denies the execution of binaries by their SHA-256,
// wherever on the host they are run from: the fleet-wide block that a hub
// operator orders once a sample is known. A copy renamed, moved or
// dropped again is still the same bytes, so it is still refused.
//
// Every local filesystem gets a fanotify FAN_OPEN_EXEC_PERM mark while the
// list is not empty. A binary is hashed on its first execution; one that
// is not blocked then gets an ignore mark, which the kernel itself clears
// when the file is modified, so an unchanged binary costs nothing from
// its second run on. Changing the list flushes those marks.
//
// Every execution on the host waits for this package's answer, so the
// answer never waits for long: after Config.Deadline the execution is
// allowed (and logged), and if the process dies the kernel allows
// everything still pending.
//
// The Blocker runs in a process of its own (Serve, driven by a Process
// from the guard over a pipe), because a process that starts programs
// must never be the one answering execution events (see serve.go). Besides
// the list by hash, which is saved and survives restarts, it blocks single
// files by inode for the guard (BlockFile: the binary of a process tree it
// stopped).
package execblock
