package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/killswitch-dev/killswitch/internal/guard"
)

// runCheck: `check config FILE` reads a guard configuration file exactly
// as `guard --config FILE` would, and checks what the guard would check
// before it starts (folders, vault, the programs it runs, the hub's
// address), without starting anything.
func runCheck(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 3 && args[0] == "config" && args[1] == "--hub" {
		return checkHubConfig(args[2], stdout, stderr)
	}
	if len(args) != 2 || args[0] != "config" {
		return fmt.Errorf("%w: check config [--hub] FILE", errUsage)
	}
	path := args[1]
	fs, o := newGuardFlags(stderr)
	if err := o.parse(fs, []string{"--config", path}); err != nil {
		return err
	}
	cfg := guard.Config{Roots: o.roots, VaultDir: *o.vaultDir, FileServers: splitList(*o.fileServers), Programs: []string{"nft"}}
	if err := guard.Check(cfg); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	hub := "none"
	if h := *o.hub.hub; h != "" {
		u, err := url.Parse(h)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("%w: %s: hub %q: want https://HOST:PORT", errConfig, path, h)
		}
		hub = h
		if *o.hub.token != "" {
			hub += " (enrols with the token on first start)"
		}
	}
	servers := *o.fileServers
	if servers == "" {
		servers = "none"
	}
	fmt.Fprintf(stdout, "%s: OK\n  protects:     %s\n  vault:        %s\n  alerts:       %s\n  hub:          %s\n  file servers: %s\n  blocklist:    %s\n",
		path, strings.Join(o.roots, ", "), *o.vaultDir, *o.alerts, hub, servers, *o.blocklist)
	return nil
}

// checkHubConfig reads a hub configuration file as `hub --config FILE`
// would, and checks its addresses, without opening the database.
func checkHubConfig(path string, stdout, stderr io.Writer) error {
	fs, s := hubFlags("hub", stderr)
	if _, err := s.parse(fs, []string{"--config", path}); err != nil {
		return err
	}
	if err := s.check(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	db := *s.db
	if u, err := url.Parse(db); err == nil && u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
			db = u.String()
		}
	}
	if db == "" {
		db = *s.data + "/hub.db (SQLite)"
	}
	webhook := *s.webhook
	if webhook == "" {
		webhook = "none"
	}
	fmt.Fprintf(stdout, "%s: OK\n  listen:   %s\n  data:     %s\n  database: %s\n  webhook:  %s\n", path, *s.listen, *s.data, db, webhook)
	return nil
}
