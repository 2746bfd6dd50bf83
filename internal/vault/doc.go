// Package vault keeps every version of every protected file that the
// guard has seen: content-addressed, deduplicated, zstd-compressed blobs
// plus an SQLite index of versions and incidents.
//
// Crash safety comes from ordering: a blob is complete on disk (written to
// a temporary name, then renamed) before the index row that names it is
// committed, and the index is an SQLite database in WAL mode. A process
// killed at any moment leaves at worst an orphan blob, which Check reports
// and Prune removes. The on-disk format is described in docs/vault-format.md.
package vault
