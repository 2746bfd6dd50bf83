package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/killswitch-dev/killswitch/internal/restore"
	"github.com/killswitch-dev/killswitch/internal/vault"
)

func runRestore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("restore", stderr)
	dir := fs.String("vault", defaultVault, "vault folder")
	incident := fs.String("incident", "", "incident id to undo (see 'killswitch incidents')")
	before := fs.String("before", "", "restore PATH... to its state at this time (RFC 3339, e.g. 2026-11-25T09:00:00Z)")
	dry := fs.Bool("dry-run", false, "list what would be done, change nothing")
	asJSON := fs.Bool("json", false, "print one JSON object per action on stdout")
	if err := parse(fs, args); err != nil {
		return err
	}
	if (*incident == "") == (*before == "") {
		return fmt.Errorf("%w: restore needs exactly one of --incident ID or --before TIME", errUsage)
	}
	v, err := vault.Open(*dir)
	if err != nil {
		return err
	}
	defer v.Close()
	opt := restore.Options{DryRun: *dry, Progress: newProgress(stderr, "restore", "files", 200).update}
	var acts []restore.Action
	if *incident != "" {
		inc, err := v.Incident(*incident)
		if err != nil {
			return err
		}
		roots := fs.Args()
		if len(roots) == 0 {
			roots = incidentRoots(inc)
		}
		acts, err = restore.Incident(v, inc, roots, opt)
		if err != nil {
			return err
		}
	} else {
		t, err := time.Parse(time.RFC3339Nano, *before)
		if err != nil {
			return fmt.Errorf("%w: --before: %w", errUsage, err)
		}
		if fs.NArg() == 0 {
			return fmt.Errorf("%w: --before needs the folders to restore", errUsage)
		}
		var roots []string
		for _, p := range fs.Args() {
			abs, err := filepath.Abs(p)
			if err != nil {
				return err
			}
			roots = append(roots, abs)
		}
		acts, err = restore.Before(v, roots, t, opt)
		if err != nil {
			return err
		}
	}
	return report(acts, *dry, *asJSON, stdout)
}

// incidentRoots: by default an incident may write only in the folders
// that hold the files it touched (their top two levels' common parent).
func incidentRoots(inc vault.Incident) []string {
	seen := map[string]bool{}
	var out []string
	for _, f := range inc.Files {
		for _, p := range []string{f.Path, f.NewPath} {
			if p == "" {
				continue
			}
			d := filepath.Dir(p)
			if !seen[d] {
				seen[d] = true
				out = append(out, d)
			}
		}
	}
	return out
}

func report(acts []restore.Action, dry, asJSON bool, stdout io.Writer) error {
	failed, counts := 0, map[string]int{}
	enc := json.NewEncoder(stdout)
	for _, a := range acts {
		if a.Error != "" {
			failed++
		}
		counts[a.Op]++
		if asJSON {
			enc.Encode(a)
			continue
		}
		line := fmt.Sprintf("%-9s %s", a.Op, a.Path)
		if a.AsPath != "" {
			line += " -> " + a.AsPath
		}
		if a.Note != "" {
			line += "  (" + a.Note + ")"
		}
		if a.Error != "" {
			line += "  ERROR: " + a.Error
		}
		fmt.Fprintln(stdout, line)
	}
	if !asJSON {
		verb := "done"
		if dry {
			verb = "planned (dry run)"
		}
		fmt.Fprintf(stdout, "%s: %d restored, %d removed, %d kept both, %d skipped, %d failed\n", verb,
			counts["restore"], counts["remove"], counts["keep-both"], counts["skip"], failed)
	}
	if failed > 0 {
		return fmt.Errorf("%w: %d files could not be restored", errFindings, failed)
	}
	return nil
}

func runIncidents(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("incidents", stderr)
	dir := fs.String("vault", defaultVault, "vault folder")
	asJSON := fs.Bool("json", false, "one JSON object per incident")
	if err := parse(fs, args); err != nil {
		return err
	}
	v, err := vault.Open(*dir)
	if err != nil {
		return err
	}
	defer v.Close()
	incs, err := v.Incidents()
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	for _, inc := range incs {
		if *asJSON {
			enc.Encode(inc)
			continue
		}
		fmt.Fprintf(stdout, "%s  %-8s  %s  pid %d %s  score %.2f  %d files damaged, %d events\n", inc.ID, inc.State,
			inc.Opened.Local().Format(time.DateTime), inc.Actor.PID, inc.Actor.Executable, inc.Score, len(inc.Damaged), len(inc.Files))
		switch {
		case inc.ClientCutOff:
			fmt.Fprintf(stdout, "    for the file-server client %s, now cut off (killswitch cutoff release %s)\n", inc.Client, inc.Client)
		case inc.Client != "":
			fmt.Fprintf(stdout, "    for the file-server client %s, NOT cut off: %s\n", inc.Client, inc.CutOffError)
		}
	}
	if len(incs) == 0 && !*asJSON {
		fmt.Fprintln(stdout, "no incidents")
	}
	return nil
}
