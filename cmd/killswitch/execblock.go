package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/killswitch-dev/killswitch/internal/execblock"
)

const defaultBlocklist = "/var/lib/killswitch/blocklist.json"

// runExecblock: `execblock list` shows the binaries this host refuses to
// run; `execblock serve` is the blocker process the guard starts (see
// internal/execblock for why it is a process of its own).
func runExecblock(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "serve") {
		return fmt.Errorf("%w: execblock list|serve", errUsage)
	}
	fs := newFlags("execblock "+args[0], stderr)
	state := fs.String("state", defaultBlocklist, "the host's blocklist (kept across restarts)")
	asJSON := fs.Bool("json", false, "list: JSON instead of a table")
	mounts := fs.String("mounts", "", "serve: comma-separated paths whose filesystems are watched (default: every local filesystem)")
	deadline := fs.Duration("deadline", 5*time.Second, "serve: longest an execution waits for a verdict before it is allowed")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if args[0] == "serve" {
		cfg := execblock.Config{State: *state, Deadline: *deadline, Log: slog.New(slog.NewTextHandler(stderr, nil))}
		if *mounts != "" {
			cfg.Mounts = strings.Split(*mounts, ",")
		}
		return execblock.Serve(ctx, cfg, os.Stdin, stdout)
	}
	b, err := os.ReadFile(*state)
	if os.IsNotExist(err) {
		b = []byte(`{"version":1,"blocked":[]}`)
	} else if err != nil {
		return err
	}
	entries, err := execblock.ParseState(b)
	if err != nil {
		return fmt.Errorf("%s: %w", *state, err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, e := range entries {
			enc.Encode(e)
		}
		return nil
	}
	if len(entries) == 0 {
		fmt.Fprintln(stdout, "no binary is blocked on this host")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SHA-256\tBLOCKED SINCE\tNOTE")
	for _, e := range entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", e.SHA256, e.Added.Local().Format(time.DateTime), e.Note)
	}
	return tw.Flush()
}
