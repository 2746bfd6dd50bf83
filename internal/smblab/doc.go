// Package smblab builds the peers that the scanner's tests and benchmarks
// scan, all on loopback addresses: Windows hosts replayed from real
// captures (vulnerable, DoublePulsar-infected, refusing anonymous
// sessions), hostile servers (garbage, truncated frames, giant lengths,
// slowloris, resets, wrong MIDs), real Samba daemons in each configuration,
// and filtered addresses. Nothing here is used by the killswitch binary.
package smblab
