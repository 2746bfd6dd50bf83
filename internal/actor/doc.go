// Package actor answers "who did this?" for a PID: executable, command
// line, parent chain, process group, session, cgroup and uid, read from
// /proc. Identities include the process start time so that a reused PID is
// never mistaken for the process that held it before.
package actor
