// Package netns makes network namespaces joined by veth pairs, for labs
// that must not touch the host's own network: the file-server drill puts
// its Samba server, its "workstation" and its "colleague" each in a
// namespace of their own, and tests do the same. Removing a namespace
// removes its links. TCP reads a namespace's TCP table from procfs (whose
// addresses this process may have no route to).
package netns
