// Package restore puts files back from the vault: every file an incident
// changed, deleted or renamed (and removes what it created), or a whole
// tree as it was at a point in time.
//
// It writes only beneath the restored root, resolving every path with
// openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS), so a symlink or ".."
// planted by an attacker cannot redirect a write. It never overwrites a
// file that someone changed after the incident: the vault's copy is put
// beside it instead, and the action says so.
package restore
