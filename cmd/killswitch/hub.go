package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/killswitch-dev/killswitch/internal/hub"
)

const defaultHubData = "/var/lib/killswitch/hub"

const hubUsage = `Usage:
  killswitch hub [--listen :8443] [--data DIR] [--db URL] [--name HOST,...] [--webhook URL] [--config FILE]
  killswitch hub token [--data DIR] [--db URL] [--ttl 24h]      print a one-time enrolment token
  killswitch hub user NAME --role viewer|responder [--data DIR] [--db URL]
                                                               set an operator's password (read from stdin)
Flags:
`

// hubSettings are the hub's settings, from its command line and the YAML
// file named by --config (whose keys are these flags' names). The
// database address may hold a password: in a file of mode 0600 it is not
// shown to every user by ps, as a command line is. `hub token` and `hub
// user` read the same file to find the database.
type hubSettings struct {
	config, data, db, listen, names, webhook, cpuProfile *string
	jsonLogs                                             *bool
}

func hubFlags(name string, stderr io.Writer) (*flag.FlagSet, *hubSettings) {
	fs := newFlags(name, stderr)
	return fs, &hubSettings{
		config:     fs.String("config", "", "read settings from this YAML file (keys are these flags' names); the command line wins"),
		data:       fs.String("data", defaultHubData, "the hub's folder: CA and, by default, its SQLite database"),
		db:         fs.String("db", "", "database: postgres://USER:PASS@HOST/DB (several hubs may share it) or a SQLite file (default DATA/hub.db)"),
		listen:     fs.String("listen", ":8443", "address for agents (mutual TLS), the web console and /metrics"),
		names:      fs.String("name", "", "host names and addresses for the hub's certificate, comma-separated (default localhost, 127.0.0.1, ::1)"),
		webhook:    fs.String("webhook", "", "POST a Slack-compatible JSON message here for each new incident"),
		jsonLogs:   fs.Bool("json", false, "logs as JSON Lines"),
		cpuProfile: fs.String("cpuprofile", "", "write a Go CPU profile to this file (for performance work)"),
	}
}

// parse reads the command line (flags anywhere), then the --config file
// for what it left unset, and returns the positional arguments.
func (s *hubSettings) parse(fs *flag.FlagSet, args []string) ([]string, error) {
	positional, err := parseInterspersed(fs, args)
	if err != nil {
		return nil, err
	}
	if *s.config != "" {
		if _, err := applyConfig(fs, *s.config, ""); err != nil {
			return nil, err
		}
	}
	return positional, nil
}

// check refuses settings the hub could not start with.
func (s *hubSettings) check() error {
	if _, _, err := net.SplitHostPort(*s.listen); err != nil {
		return fmt.Errorf("%w: listen %q: %v", errConfig, *s.listen, err)
	}
	if d := *s.db; strings.Contains(d, "://") {
		if u, err := url.Parse(d); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
			return fmt.Errorf("%w: db: want postgres://USER:PASS@HOST/DB or a SQLite file", errConfig)
		}
	}
	if w := *s.webhook; w != "" {
		if u, err := url.Parse(w); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("%w: webhook %q: want an http(s) URL", errConfig, w)
		}
	}
	return nil
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
	fs, s := hubFlags("hub", stderr)
	fs.Usage = func() { fmt.Fprint(stderr, hubUsage); fs.PrintDefaults() }
	positional, err := s.parse(fs, args)
	if err != nil {
		return err
	}
	if len(positional) > 0 {
		return fmt.Errorf("%w: hub takes no arguments (token and user are its subcommands)", errUsage)
	}
	if err := s.check(); err != nil {
		return err
	}
	if *s.cpuProfile != "" {
		f, err := os.Create(*s.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	cfg := hub.Config{Listen: *s.listen, DataDir: *s.data, DB: *s.db, Webhook: *s.webhook, Log: newLogger(stderr, *s.jsonLogs)}
	if *s.names != "" {
		cfg.Names = strings.Split(*s.names, ",")
	}
	h, err := hub.Open(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "hub: listening on %s (console: https://%s/, CA: %s/ca.pem)\n", h.Addr(), h.Addr(), *s.data)
	return h.Serve(ctx)
}

func runHubToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, s := hubFlags("hub token", stderr)
	ttl := fs.Duration("ttl", hub.TokenTTLDefault, "how long the token may be used")
	if positional, err := s.parse(fs, args); err != nil {
		return err
	} else if len(positional) > 0 {
		return fmt.Errorf("%w: hub token takes no arguments", errUsage)
	}
	if *ttl <= 0 || *ttl > 30*24*time.Hour {
		return fmt.Errorf("%w: --ttl between 1s and 30 days", errUsage)
	}
	h, err := hub.Open(ctx, hub.Config{DataDir: *s.data, DB: *s.db})
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
	fs, s := hubFlags("hub user", stderr)
	role := fs.String("role", hub.RoleViewer, "viewer (sees everything) or responder (also queues actions)")
	names, err := s.parse(fs, args)
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
	h, err := hub.Open(ctx, hub.Config{DataDir: *s.data, DB: *s.db})
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
