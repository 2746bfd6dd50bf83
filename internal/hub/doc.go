// Package hub is the fleet's server: agents enrol with a one-time token and
// then report over mutual TLS (heartbeats, incidents, scan results,
// sinkhole hits, action results), exactly once and in order; operators sign
// in to the embedded web console to see hosts, incidents and exposure and
// to queue actions that agents pick up when online. Every action and login
// is audited.
package hub
