// Package drill rehearses an attack safely: in a fresh temporary folder it
// makes a corpus, arms a guard on it, runs a simulator profile as a child
// process, and then restores the incident with a separate
// `killswitch restore` process, comparing every file with its checksum.
package drill
