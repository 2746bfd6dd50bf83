// Package cutoff cuts a file-server client off. When ransomware on a
// workstation encrypts a share, the process writing on the server is the
// file server's (smbd forks one per client), and stopping the server would
// do the attacker's work. So the guard stops only the processes serving
// that client, and this package finds the client's address from their
// sockets and drops its traffic to the file-sharing ports with nftables,
// until an operator releases it.
package cutoff
