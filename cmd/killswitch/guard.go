package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/killswitch-dev/killswitch/internal/agent"
	"github.com/killswitch-dev/killswitch/internal/alert"
	"github.com/killswitch-dev/killswitch/internal/execblock"
	"github.com/killswitch-dev/killswitch/internal/guard"
	"github.com/killswitch-dev/killswitch/internal/hub/store"
	"github.com/killswitch-dev/killswitch/internal/vault"
)

// guardFlags are the guard's settings, from its command line and the
// YAML file named by --config (whose keys are these flags' names).
type guardFlags struct {
	config, vaultDir, alerts, cpuProfile, blocklist, execMounts, fileServers, cutOffState, metrics *string
	jsonLogs, blockExec                                                                            *bool
	isolateTimeout                                                                                 *time.Duration
	hub                                                                                            agentFlags
	roots                                                                                          []string
}

func newGuardFlags(stderr io.Writer) (*flag.FlagSet, *guardFlags) {
	fs := newFlags("guard", stderr)
	return fs, &guardFlags{
		config:         fs.String("config", "", "read settings from this YAML file: keys are these flags' names, 'protect' lists the folders; the command line wins"),
		vaultDir:       fs.String("vault", defaultVault, "vault folder (outside the protected folders)"),
		alerts:         fs.String("alerts", "-", "file to append alerts to as ECS JSON Lines ('-' for stdout)"),
		jsonLogs:       fs.Bool("json", false, "write logs on stderr as JSON Lines"),
		blockExec:      fs.Bool("block-exec", true, "after stopping an attack, deny every further execution of its binary (never a system binary under /usr, /bin, /sbin, /lib)"),
		cpuProfile:     fs.String("cpuprofile", "", "write a Go CPU profile to this file (for performance work)"),
		hub:            addAgentFlags(fs),
		isolateTimeout: fs.Duration("isolate-timeout", 10*time.Minute, "undo an isolation when the hub has been unreachable this long"),
		blocklist:      fs.String("blocklist", defaultBlocklist, "binaries this host refuses to run, by SHA-256 (kept from the hub's block-hash actions)"),
		execMounts:     fs.String("exec-mounts", "", "comma-separated paths whose filesystems the blocklist covers (default: every local filesystem)"),
		metrics:        fs.String("metrics", "", "serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464; off by default)"),
		cutOffState:    fs.String("cutoff-state", defaultCutOff, "file-server clients cut off after an attack through a share, kept across restarts"),
		fileServers:    fs.String("file-servers", "smbd", "comma-separated executable names that write for remote clients, one process each: an attack through one cuts its client off instead of stopping the server ('' for none)"),
	}
}

// parse reads the command line, then the --config file for what the
// command line left unset. Folders on the command line replace the file's.
func (g *guardFlags) parse(fs *flag.FlagSet, args []string) error {
	if err := parse(fs, args); err != nil {
		return err
	}
	g.roots = fs.Args()
	if *g.config != "" {
		fileRoots, err := applyConfig(fs, *g.config, "protect")
		if err != nil {
			return err
		}
		if len(g.roots) == 0 {
			g.roots = fileRoots
		}
	}
	if len(g.roots) == 0 {
		return fmt.Errorf("%w: guard needs at least one folder to protect", errUsage)
	}
	return nil
}

func runGuard(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, o := newGuardFlags(stderr)
	if err := o.parse(fs, args); err != nil {
		return err
	}
	log := newLogger(stderr, *o.jsonLogs)
	if *o.cpuProfile != "" {
		f, err := os.Create(*o.cpuProfile)
		if err != nil {
			return fmt.Errorf("cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	var aw io.Writer = stdout
	if *o.alerts != "-" {
		f, err := os.OpenFile(*o.alerts, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return fmt.Errorf("alerts: %w", err)
		}
		defer f.Close()
		aw = f
	}
	cfg := guard.Config{Roots: o.roots, VaultDir: *o.vaultDir, Alerts: alert.NewWriter(aw), Log: log,
		Progress: stderr, BlockExec: *o.blockExec, Ready: func() { notifyReady(log) }, FileServers: splitList(*o.fileServers), CutOffState: *o.cutOffState}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	host := &agent.Host{Exe: exe, Vault: *o.vaultDir, Hub: *o.hub.hub, NFT: []string{"nft"}, CutOffState: *o.cutOffState}
	cfg.Programs = host.NFT[:1]
	// Bad folders are refused before enrolment spends its one-time token.
	if err := guard.Check(cfg); err != nil {
		return err
	}
	ag, err := o.hub.open(ctx, host, log)
	if err != nil {
		return err
	}
	var g *guard.Guard
	var wg sync.WaitGroup
	// Executions are refused by a process of its own (see
	// internal/execblock): for --block-exec, for the hub's block-hash
	// actions, and for a list kept from before.
	if _, err := os.Stat(*o.blocklist); *o.blockExec || ag != nil || err == nil {
		bctx, stop := context.WithCancel(ctx)
		argv := []string{exe, "execblock", "serve", "--state", *o.blocklist}
		if *o.execMounts != "" {
			argv = append(argv, "--mounts", *o.execMounts)
		}
		onDeny := func(d execblock.Denial) {}
		if ag != nil {
			onDeny = func(d execblock.Denial) { ag.Report(store.KindExecBlocked, "exec-"+d.SHA256, execBlockedIncident(d)) }
		}
		if blocker, err := execblock.Start(bctx, argv, nil, onDeny, log); err != nil {
			// Files are what the guard is for: it runs without blocking.
			log.Error("executions cannot be blocked on this host", "err", err)
			stop()
		} else {
			defer func() { stop(); blocker.Wait() }()
			host.Blocker = blocker
			cfg.ExecBlocker = blocker
		}
	}
	if ag != nil {
		defer ag.Close()
		cfg.OnIncident = func(inc vault.Incident) {
			if err := ag.Report(store.KindIncident, inc.ID, inc); err != nil {
				log.Error("hub report", "err", err)
			}
		}
		host.AfterRestore = func(id string) {
			if inc, err := g.Incident(id); err == nil {
				ag.Report(store.KindIncident, id, inc)
			}
		}
		actx, stop := context.WithCancel(ctx)
		defer func() { stop(); wg.Wait() }()
		wg.Add(2)
		go func() { defer wg.Done(); ag.Run(actx) }()
		go func() {
			defer wg.Done()
			host.Watch(actx, ag.LastContact, *o.isolateTimeout, func() { log.Warn("hub unreachable: isolation undone") })
		}()
		log.Info("reporting to the hub", "hub", ag.Hub(), "host_id", ag.HostID())
	}
	if g, err = guard.New(cfg); err != nil {
		return err
	}
	if *o.metrics != "" {
		stop, err := serveMetrics(*o.metrics, g, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	return g.Run(ctx)
}

// serveMetrics serves the guard's counters, its permission-path latency
// and the process's own figures for Prometheus at http://ADDR/metrics.
func serveMetrics(addr string, g *guard.Guard, log *slog.Logger) (stop func(), err error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(g.Collector(), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	log.Info("metrics", "url", "http://"+l.Addr().String()+"/metrics")
	return func() { srv.Close() }, nil
}

// execBlockedIncident is how the hub shows a refused execution: an
// incident of its own, updated with the count as attempts go on.
func execBlockedIncident(d execblock.Denial) map[string]any {
	return map[string]any{
		"state":      "denied",
		"sha256":     d.SHA256,
		"note":       d.Note,
		"actor":      map[string]any{"pid": d.PID, "executable": d.Path},
		"count":      d.Count,
		"last":       d.Time,
		"indicators": []string{"execution of a blocked binary"},
	}
}

func newLogger(w io.Writer, asJSON bool) *slog.Logger {
	if asJSON {
		return slog.New(slog.NewJSONHandler(w, nil))
	}
	return slog.New(slog.NewTextHandler(w, nil))
}

// notifyReady implements the systemd notify protocol (sd_notify READY=1).
func notifyReady(log *slog.Logger) {
	sock := os.Getenv("NOTIFY_SOCKET")
	if sock == "" {
		return
	}
	if sock[0] == '@' {
		sock = "\x00" + sock[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		log.Warn("NOTIFY_SOCKET", "err", err)
		return
	}
	defer c.Close()
	if _, err := c.Write([]byte("READY=1")); err != nil {
		log.Warn("NOTIFY_SOCKET", "err", err)
	}
}

// splitList splits a comma-separated flag; "" is an empty list, not nil
// (which would mean "the default").
func splitList(s string) []string {
	out := []string{}
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
