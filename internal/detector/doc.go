// Package detector decides, from file events and content samples, whether
// a process tree is destroying files. It is pure and deterministic: time
// comes from the events, so recorded event scripts replay to the same
// verdicts (see testdata/*.script and the golden files beside them).
//
// Each event is scored on its own (is this file now ciphertext? a wipe? a
// ransom note?) and the score is added to the actor and to every ancestor
// in its lineage, so that "one process per file" adds up at the parent
// that spawns them. The deepest process whose score crosses the threshold
// is the one to stop.
package detector
