package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/killswitch-dev/killswitch/internal/execblock"
)

const defaultBlocklist = "/var/lib/killswitch/blocklist.json"

// runExecblock: `execblock list` shows the binaries this host refuses to
// run, `block` and `unblock` change the list without a hub (a running
// guard applies it within a second), and `serve` is the blocker process
// the guard starts (see internal/execblock for why it is a process of its
// own).
func runExecblock(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || !slices.Contains([]string{"list", "block", "unblock", "serve"}, args[0]) {
		return fmt.Errorf("%w: execblock list|block SHA256|unblock SHA256|serve", errUsage)
	}
	fs := newFlags("execblock "+args[0], stderr)
	state := fs.String("state", defaultBlocklist, "the host's blocklist (kept across restarts)")
	asJSON := fs.Bool("json", false, "list: JSON instead of a table")
	mounts := fs.String("mounts", "", "serve: comma-separated paths whose filesystems are watched (default: every local filesystem)")
	deadline := fs.Duration("deadline", 5*time.Second, "serve: longest an execution waits for a verdict before it is allowed")
	note := fs.String("note", "", "block: why (shown in logs, alerts and the list)")
	positional, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	if args[0] == "block" || args[0] == "unblock" {
		return editBlocklist(args[0], *state, *note, positional, stdout)
	}
	if args[0] == "serve" {
		cfg := execblock.Config{State: *state, Deadline: *deadline, Log: slog.New(slog.NewTextHandler(stderr, nil))}
		if *mounts != "" {
			cfg.Mounts = strings.Split(*mounts, ",")
		}
		return execblock.Serve(ctx, cfg, os.Stdin, stdout)
	}
	if len(positional) > 0 {
		return fmt.Errorf("%w: execblock %s takes no arguments", errUsage, args[0])
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

// editBlocklist adds or removes hashes in the host's list.
func editBlocklist(op, state, note string, hashes []string, stdout io.Writer) error {
	if len(hashes) == 0 {
		return fmt.Errorf("%w: execblock %s needs at least one SHA-256", errUsage, op)
	}
	var sums []execblock.Sum
	for _, h := range hashes {
		sum, err := execblock.ParseSum(h)
		if err != nil {
			return fmt.Errorf("%w: %w", errUsage, err)
		}
		if op == "block" {
			if err := execblock.CheckBlockable(sum); err != nil {
				return err
			}
		}
		sums = append(sums, sum)
	}
	changed := 0
	err := execblock.EditState(state, func(list []execblock.Entry) ([]execblock.Entry, error) {
		for _, sum := range sums {
			i := slices.IndexFunc(list, func(e execblock.Entry) bool { return e.SHA256 == sum.String() })
			switch {
			case op == "block" && i < 0:
				list = append(list, execblock.Entry{SHA256: sum.String(), Note: note, Added: time.Now().UTC()})
				changed++
			case op == "unblock" && i >= 0:
				list = slices.Delete(list, i, i+1)
				changed++
			}
		}
		return list, nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d %sed (%d already so) in %s; a running guard applies it within a second, otherwise the next guard does\n",
		changed, op, len(sums)-changed, state)
	return nil
}
