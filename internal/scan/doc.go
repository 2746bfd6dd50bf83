// Package scan finds the hosts a WannaCry-class worm can reach: whether a
// port is open, whether SMBv1 is on, which SMB2/3 dialects and signing
// modes are offered, whether MS17-010 is missing, and whether the
// DoublePulsar implant answers.
//
// Each check runs on its own connection with its own deadline and ends in a
// fixed verdict with a fixed reason, never free text, and never "not
// vulnerable" when the check could not run. Only the detection probes of
// package smb are ever sent: no exploit, no credentials, no writes.
package scan
