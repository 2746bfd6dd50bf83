// Package store keeps the hub's state: hosts, enrolment tokens, incidents,
// scan results, actions, operators and the audit log. One implementation
// over database/sql serves both SQLite (the default: one file, no set-up)
// and PostgreSQL (several hubs sharing one database); one conformance suite
// runs against both.
package store
