package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/killswitch-dev/killswitch/internal/drill"
	"github.com/killswitch-dev/killswitch/internal/hub"
	"github.com/killswitch-dev/killswitch/internal/hub/store"
	"github.com/killswitch-dev/killswitch/internal/simulate"
)

func runDrill(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("drill", stderr)
	profile := fs.String("profile", "wannacry", "behaviour profile to rehearse ('all' for every one; see 'killswitch simulate list')")
	files := fs.Int("files", 120, "number of files in the drill corpus")
	keep := fs.Bool("keep", false, "keep the drill's temporary folder")
	asJSON := fs.Bool("json", false, "one JSON object per profile on stdout")
	verbose := fs.Bool("v", false, "show the guard's log")
	withHub := fs.Bool("hub", false, "also start a hub, link the guard to it as an agent, restore through the hub, and keep the console up until Ctrl-C")
	share := fs.Bool("share", false, "attack through a Samba share from a workstation instead (needs samba, smbclient, nftables; all in network namespaces of the drill's own)")
	if err := parse(fs, args); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	profiles := []string{*profile}
	if *share {
		if *profile != "wannacry" {
			return fmt.Errorf("%w: --share rehearses WannaCry through a share; it takes no --profile", errUsage)
		}
		profiles = []string{"share"}
	} else if *profile == "all" {
		profiles = nil
		for _, p := range simulate.Profiles() {
			profiles = append(profiles, p.Name)
		}
	}
	logw := io.Discard
	if *verbose {
		logw = stderr
	}
	var local *localHub
	if *withHub {
		if local, err = startLocalHub(ctx, stderr); err != nil {
			return err
		}
		defer local.stop()
	}
	failed := 0
	for _, p := range profiles {
		opt := drill.Options{Profile: p, Files: *files, Exe: exe, Keep: *keep, Log: slog.New(slog.NewTextHandler(logw, nil)), Share: *share}
		if local != nil {
			if opt.Hub, err = local.link(ctx, p); err != nil {
				return err
			}
		}
		res, err := drill.Run(ctx, opt)
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
		printDrill(stdout, res, *keep, local != nil)
	}
	if local != nil {
		local.wait(ctx, stdout)
	}
	if failed > 0 {
		return fmt.Errorf("%w: %d of %d drills did not end with the attack stopped and every file restored", errFindings, failed, len(profiles))
	}
	return nil
}

// localHub is the hub a drill starts with --hub: loopback only, a
// throwaway folder, one responder account.
type localHub struct {
	h        *hub.Hub
	dir      string
	password string
	stopHub  func() error
}

func startLocalHub(ctx context.Context, stderr io.Writer) (*localHub, error) {
	dir, err := os.MkdirTemp("", "killswitch-drill-hub-")
	if err != nil {
		return nil, err
	}
	h, err := hub.Open(ctx, hub.Config{Listen: "127.0.0.1:0", DataDir: dir})
	if err != nil {
		return nil, err
	}
	l := &localHub{h: h, dir: dir, password: store.NewID()[:16]}
	if err := h.AddUser(ctx, "drill", l.password, hub.RoleResponder); err != nil {
		return nil, err
	}
	l.stopHub = h.Start()
	fmt.Fprintf(stderr, "hub: console at %s/ (user drill, password %s)\n", h.URL(), l.password)
	return l, nil
}

func (l *localHub) link(ctx context.Context, profile string) (*drill.HubLink, error) {
	tok, err := l.h.NewToken(ctx, time.Hour)
	if err != nil {
		return nil, err
	}
	return &drill.HubLink{URL: l.h.URL(), Token: tok, StateDir: filepath.Join(l.dir, "agent-"+profile),
		RestoreVia: func(ctx context.Context, host, incident string) error {
			return l.h.RestoreAndWait(ctx, "drill", host, incident)
		}}, nil
}

// wait keeps the console up for the operator until Ctrl-C.
func (l *localHub) wait(ctx context.Context, w io.Writer) {
	fmt.Fprintf(w, "\nThe incidents are in the hub's console: %s/ (user drill, password %s). Ctrl-C to stop.\n", l.h.URL(), l.password)
	<-ctx.Done()
}

func (l *localHub) stop() {
	l.stopHub()
	os.RemoveAll(l.dir)
}

func printDrill(w io.Writer, r drill.Result, kept, viaHub bool) {
	fmt.Fprintf(w, "\n== drill: %s ==\n", r.Profile)
	fmt.Fprintf(w, "1. made a practice folder of %d files (%s) and armed a guard on it\n", r.Files, r.Dir)
	if r.Share != nil {
		fmt.Fprintf(w, "2. shared it with a real smbd, and from a workstation (%s) overwrote it the way WannaCry does: an encrypted .WNCRY copy, then the original deleted\n", r.Share.Workstation)
	} else {
		fmt.Fprintf(w, "2. ran the %q ransomware simulator against it\n", r.Profile)
	}
	if r.Stopped {
		who := "the simulator"
		if r.Share != nil {
			who = "the smbd process serving the workstation"
		}
		fmt.Fprintf(w, "3. STOPPED: the guard froze and killed %s %s after its first damaging write\n", who, r.TimeToStop.Round(time.Millisecond))
		fmt.Fprintf(w, "   files damaged before the stop: %d of %d; files it created (notes, encrypted copies): %d\n", r.Damaged, r.Files, r.AttackerFiles)
		fmt.Fprintf(w, "   why: %v\n", r.Indicators)
		fmt.Fprintf(w, "   incident: %s\n", r.Incident)
		if r.Alert != "" {
			fmt.Fprintf(w, "   the alert it wrote (ECS JSON, for your SIEM):\n   %s\n", r.Alert)
		}
	} else {
		fmt.Fprintf(w, "3. NOT STOPPED: the simulator ran to the end; %d files damaged\n", r.Damaged)
	}
	if s := r.Share; s != nil && r.Stopped {
		fmt.Fprintf(w, "   only that process was stopped, not the server; the incident names the client %s\n", s.Client)
		fmt.Fprintf(w, "   workstation cut off from ports 445/139: %v (it tried again and was refused: %v); a colleague still uses the share: %v\n", s.CutOff, s.WorkstationRefused, s.ColleagueServed)
	}
	switch {
	case !r.Stopped:
		fmt.Fprintln(w, "4. restored with 'killswitch restore --before' the attack (a missed attack loses nothing either)")
	case viaHub:
		fmt.Fprintf(w, "4. restored incident %s through a restore action queued at the hub, which the guard's agent ran\n", r.Incident)
	default:
		fmt.Fprintf(w, "4. restored with 'killswitch restore --incident %s', a process of its own, while the guard ran\n", r.Incident)
	}
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
