package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/killswitch-dev/killswitch/internal/hub"
)

const defaultHubData = "/var/lib/killswitch/hub"

const hubUsage = `Usage:
  killswitch hub [--listen :8443] [--data DIR] [--db URL] [--name HOST,...] [--webhook URL]
  killswitch hub token [--data DIR] [--db URL] [--ttl 24h]      print a one-time enrolment token
  killswitch hub user NAME --role viewer|responder [--data DIR] [--db URL]
                                                               set an operator's password (read from stdin)
Flags:
`

func hubFlags(name string, stderr io.Writer) (*flag.FlagSet, *string, *string) {
	fs := newFlags(name, stderr)
	data := fs.String("data", defaultHubData, "the hub's folder: CA and, by default, its SQLite database")
	db := fs.String("db", "", "database: postgres://USER:PASS@HOST/DB (several hubs may share it) or a SQLite file (default DATA/hub.db)")
	return fs, data, db
}

func runHub(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "token":
			return runHubToken(ctx, args[1:], stdout, stderr)
		case "user":
			return runHubUser(ctx, args[1:], os.Stdin, stdout, stderr)
		}
	}
	fs, data, db := hubFlags("hub", stderr)
	fs.Usage = func() { fmt.Fprint(stderr, hubUsage); fs.PrintDefaults() }
	listen := fs.String("listen", ":8443", "address for agents (mutual TLS), the web console and /metrics")
	names := fs.String("name", "", "host names and addresses for the hub's certificate, comma-separated (default localhost, 127.0.0.1, ::1)")
	webhook := fs.String("webhook", "", "POST a Slack-compatible JSON message here for each new incident")
	jsonLogs := fs.Bool("json", false, "logs as JSON Lines")
	cpuProfile := fs.String("cpuprofile", "", "write a Go CPU profile to this file (for performance work)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	cfg := hub.Config{Listen: *listen, DataDir: *data, DB: *db, Webhook: *webhook, Log: newLogger(stderr, *jsonLogs)}
	if *names != "" {
		cfg.Names = strings.Split(*names, ",")
	}
	h, err := hub.Open(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "hub: listening on %s (console: https://%s/, CA: %s/ca.pem)\n", h.Addr(), h.Addr(), *data)
	return h.Serve(ctx)
}

func runHubToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, data, db := hubFlags("hub token", stderr)
	ttl := fs.Duration("ttl", hub.TokenTTLDefault, "how long the token may be used")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *ttl <= 0 || *ttl > 30*24*time.Hour {
		return fmt.Errorf("%w: --ttl between 1s and 30 days", errUsage)
	}
	h, err := hub.Open(ctx, hub.Config{DataDir: *data, DB: *db})
	if err != nil {
		return err
	}
	defer h.Close()
	tok, err := h.NewToken(ctx, *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

func runHubUser(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs, data, db := hubFlags("hub user", stderr)
	role := fs.String("role", hub.RoleViewer, "viewer (sees everything) or responder (also queues actions)")
	names, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(names) != 1 {
		return fmt.Errorf("%w: hub user NAME --role ROLE, password on stdin", errUsage)
	}
	fmt.Fprintln(stderr, "password (at least 12 characters), then Enter:")
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && line == "" {
		return fmt.Errorf("%w: no password on stdin", errUsage)
	}
	h, err := hub.Open(ctx, hub.Config{DataDir: *data, DB: *db})
	if err != nil {
		return err
	}
	defer h.Close()
	if err := h.AddUser(ctx, names[0], strings.TrimRight(line, "\r\n"), *role); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	fmt.Fprintf(stdout, "user %s (%s) set\n", names[0], *role)
	return nil
}
