package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/killswitch-dev/killswitch/internal/drill"
	"github.com/killswitch-dev/killswitch/internal/simulate"
)

func runDrill(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("drill", stderr)
	profile := fs.String("profile", "wannacry", "behaviour profile to rehearse ('all' for every one; see 'killswitch simulate list')")
	files := fs.Int("files", 120, "number of files in the drill corpus")
	keep := fs.Bool("keep", false, "keep the drill's temporary folder")
	asJSON := fs.Bool("json", false, "one JSON object per profile on stdout")
	verbose := fs.Bool("v", false, "show the guard's log")
	if err := parse(fs, args); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	profiles := []string{*profile}
	if *profile == "all" {
		profiles = nil
		for _, p := range simulate.Profiles() {
			profiles = append(profiles, p.Name)
		}
	}
	logw := io.Discard
	if *verbose {
		logw = stderr
	}
	failed := 0
	for _, p := range profiles {
		res, err := drill.Run(ctx, drill.Options{Profile: p, Files: *files, Exe: exe, Keep: *keep,
			Log: slog.New(slog.NewTextHandler(logw, nil))})
		if err != nil {
			return err
		}
		if !res.OK() {
			failed++
		}
		if *asJSON {
			json.NewEncoder(stdout).Encode(res)
			continue
		}
		printDrill(stdout, res, *keep)
	}
	if failed > 0 {
		return fmt.Errorf("%w: %d of %d drills did not end with the attack stopped and every file restored", errFindings, failed, len(profiles))
	}
	return nil
}

func printDrill(w io.Writer, r drill.Result, kept bool) {
	fmt.Fprintf(w, "\n== drill: %s ==\n", r.Profile)
	fmt.Fprintf(w, "1. made a practice folder of %d files (%s) and armed a guard on it\n", r.Files, r.Dir)
	fmt.Fprintf(w, "2. ran the %q ransomware simulator against it\n", r.Profile)
	if r.Stopped {
		fmt.Fprintf(w, "3. STOPPED: the guard froze and killed the simulator %s after its first damaging write\n", r.TimeToStop.Round(time.Millisecond))
		fmt.Fprintf(w, "   files damaged before the stop: %d of %d; files it created (notes, encrypted copies): %d\n", r.Damaged, r.Files, r.AttackerFiles)
		fmt.Fprintf(w, "   why: %v\n", r.Indicators)
		fmt.Fprintf(w, "   incident: %s\n", r.Incident)
		if r.Alert != "" {
			fmt.Fprintf(w, "   the alert it wrote (ECS JSON, for your SIEM):\n   %s\n", r.Alert)
		}
	} else {
		fmt.Fprintf(w, "3. NOT STOPPED: the simulator ran to the end; %d files damaged\n", r.Damaged)
	}
	fmt.Fprintf(w, "4. restored with 'killswitch restore --incident %s'\n", r.Incident)
	fmt.Fprintf(w, "   files still missing or different from their original checksum: %d; attacker files left: %d\n", r.Lost, r.LeftOver)
	if r.OK() {
		fmt.Fprintln(w, "RESULT: PASS: attack stopped, every file back byte for byte")
		if kept {
			fmt.Fprintf(w, "(kept: killswitch incidents --vault %s/vault)\n", r.Dir)
		} else {
			fmt.Fprintln(w, "(the practice folder is gone; run with --keep to look at it and its vault afterwards)")
		}
	} else {
		fmt.Fprintln(w, "RESULT: FAIL")
		fmt.Fprint(w, r.RestoreOutput)
	}
}
