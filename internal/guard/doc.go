// Package guard wires the pipeline of one host: fanotify events feed the
// vault (preserve every version before it can be lost) and the detector
// (is a process tree destroying files?), whose decisions go to the
// responder (freeze, kill) and out as alerts and incidents.
//
// All events are handled in order by one loop. That order is what lets the
// guard hold an attacker: its next open of a protected file is answered
// only after its previous write has been judged.
package guard
