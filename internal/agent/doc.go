// Package agent links a host to the hub: it enrols once with a one-time
// token, then sends heartbeats and reports (incidents, scan results,
// sinkhole hits, action results) over mutual TLS, and runs the actions the
// hub queues for it. Reports go through a durable outbox: when the hub is
// unreachable they wait on disk and are delivered once, in order, when it
// returns (the hub drops a report ID it has seen).
package agent
