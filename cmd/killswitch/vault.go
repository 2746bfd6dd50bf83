package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/killswitch-dev/killswitch/internal/vault"
)

func runVault(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "check" && args[0] != "prune") {
		return fmt.Errorf("%w: vault check|prune [--vault DIR]", errUsage)
	}
	fs := newFlags("vault "+args[0], stderr)
	dir := fs.String("vault", defaultVault, "vault folder")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	maxAge := fs.Duration("max-age", 30*24*time.Hour, "prune: drop versions older than this (never the newest of a file, nor any an open incident needs)")
	maxBytes := fs.Int64("max-bytes", 0, "prune: then drop the oldest versions while the vault is larger than this (0: no limit)")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	v, err := vault.Open(*dir)
	if err != nil {
		return err
	}
	defer v.Close()
	if args[0] == "prune" {
		n, err := v.Prune(*maxAge, *maxBytes, time.Now())
		fmt.Fprintf(stdout, "pruned %d versions\n", n)
		return err
	}
	r, err := v.Check()
	if err != nil {
		return err
	}
	if *asJSON {
		json.NewEncoder(stdout).Encode(r)
	} else {
		fmt.Fprintf(stdout, "versions %d, blobs %d (%d bytes), missing %d, corrupt %d, orphans %d\n",
			r.Versions, r.Blobs, r.Bytes, len(r.Missing), len(r.Corrupt), len(r.Orphans))
		if r.IndexProblem != "" {
			fmt.Fprintln(stdout, "index:", r.IndexProblem)
		}
	}
	if !r.OK() {
		return fmt.Errorf("%w: vault check found damage", errFindings)
	}
	return nil
}
