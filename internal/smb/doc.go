// Package smb encodes the few SMB requests a detection scan may send and
// decodes the replies: NetBIOS session framing (RFC 1002, also used on port
// 445), the SMB1 messages of the MS17-010 and DoublePulsar checks, and the
// SMB2 NEGOTIATE that reveals dialects and signing.
//
// It holds no connections and no shared buffers: every request is built
// fresh into its own slice, so any number of goroutines may use it. Every
// decoder bounds-checks its input and returns an error, never panics; each
// has a fuzz target.
//
// What may be sent is deliberately small: negotiate, an anonymous
// (credential-free) session setup, a tree connect to IPC$, the
// PeekNamedPipe transaction on FID 0, and the DoublePulsar "ping". No
// exploit packet, no credentials, no DoublePulsar command other than ping.
package smb
