// Package responder stops an attacking process tree: it freezes the whole
// lineage with SIGSTOP first (so that no member can react or spawn while
// the others are being stopped), then kills it.
package responder
