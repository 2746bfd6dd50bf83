package guard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/killswitch-dev/killswitch/internal/actor"
	"github.com/killswitch-dev/killswitch/internal/alert"
	"github.com/killswitch-dev/killswitch/internal/detector"
	"github.com/killswitch-dev/killswitch/internal/fanotify"
	"github.com/killswitch-dev/killswitch/internal/responder"
	"github.com/killswitch-dev/killswitch/internal/vault"
)

// Config is what `killswitch guard` passes in.
type Config struct {
	Roots    []string
	VaultDir string
	Alerts   *alert.Writer
	Log      *slog.Logger
	Progress io.Writer // baseline progress; nil for none
	Detector detector.Config
	// Ready is called once everything is marked and the baseline is done.
	Ready func()
	// OnIncident is called after each incident is recorded (drill, tests).
	OnIncident func(vault.Incident)
	// BlockExec denies, for the blocker's lifetime, every further
	// execution of a binary whose process tree was stopped, through
	// ExecBlocker (without one, nothing is blocked).
	BlockExec   bool
	ExecBlocker interface {
		BlockFile(ctx context.Context, path, note string) error
	}
	// Trusted lists executables whose restore, incidents and vault
	// subcommands may open the vault; this process's own binary always may.
	Trusted []string
	// Programs lists what this process starts while it guards, besides
	// its own binary and NFT (which it always may start). See Check.
	Programs []string
	// FileServers names (by base name) the executables that write for
	// remote clients, one process per client: an attack through one is
	// answered by stopping that process and cutting its client off, never
	// the server. Default: smbd.
	FileServers []string
	// NFT is how nft is run to cut a client off (default {"nft"}), and
	// CutOffState where the list of clients cut off is kept (default: in
	// the vault's parent folder, beside the blocklist).
	NFT         []string
	CutOffState string
}

// ErrConfig is wrapped by errors in the guard's configuration.
var ErrConfig = errors.New("guard: bad configuration")

// Guard is one running guard.
type Guard struct {
	cfg    Config
	vault  *vault.Vault
	det    *detector.Detector
	actors *actor.Cache
	resp   *responder.Responder
	perm   *fanotify.Group
	dirent *fanotify.Group
	vaultG *fanotify.Group

	self      int
	selfExe   string
	protected map[int]bool // PIDs never stopped: us and our ancestors

	tree  *tree
	files *fileTable

	// Loop-owned state (no locking: only the loop touches it).
	frozen    map[int]detector.Actor // pid -> the stopped actor it belongs to: its opens are denied
	servers   map[string]netip.Addr  // actor id -> the client a file server's process serves (see isServer)
	hotUntil  time.Time              // findings seen recently: no new ignore marks
	pending   []pendingIncident
	stats     Stats
	published atomic.Pointer[Stats] // stats as of the loop's last pass, for Snapshot
	metrics   *metrics
	latencies []time.Duration // permission-path decision times (sampled)
	snapshots chan snapJob
	// Versions just preserved, whose files the loop may ignore until they
	// are modified (see placeIgnoreMarks); pendingIgnore waits for commits.
	toIgnore      chan ignoreJob
	pendingIgnore []ignoreJob
	workers       sync.WaitGroup
	rescanMu      sync.Mutex
	ignored       map[fileKey]string // ignore marks placed (path when placed)
	sampleBuf     []byte             // the loop's read buffer for content samples
}

// Stats counts what the guard did.
type Stats struct {
	PermEvents, Ignored, CatchUps, CloseWrites, Dirents, Overflows, Incidents int
}

type pendingIncident struct {
	inc    vault.Incident
	actor  string
	at     time.Time
	exeSum chan string // the actor binary's SHA-256, once hashed ("" if it could not be)
	cut    chan error  // the client's cut-off, for a file server's process (nil otherwise)
}

// Check validates the configuration without opening anything, so that a
// command can refuse bad flags before it does anything that cannot be
// undone (such as spending a one-time enrolment token).
func Check(cfg Config) error {
	_, err := cfg.normalized()
	return err
}

// New validates the configuration and opens the vault. It places no marks.
func New(cfg Config) (*Guard, error) {
	cfg, err := cfg.normalized()
	if err != nil {
		return nil, err
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Alerts == nil {
		cfg.Alerts = alert.NewWriter(io.Discard)
	}
	if cfg.Detector.Threshold == 0 {
		cfg.Detector = detector.DefaultConfig()
	}
	g := &Guard{cfg: cfg, self: os.Getpid(), actors: actor.NewCache("/proc"),
		frozen: map[int]detector.Actor{}, servers: map[string]netip.Addr{}, metrics: newMetrics(), ignored: map[fileKey]string{}, protected: map[int]bool{1: true},
		tree: newTree(), files: newFileTable(), snapshots: make(chan snapJob, 1024), toIgnore: make(chan ignoreJob, 1024)}
	g.selfExe, _ = os.Executable()
	for _, a := range g.actors.Lineage(g.self) {
		g.protected[a.PID] = true
	}
	g.resp = &responder.Responder{Proc: "/proc", Protect: func(pid int) bool { return g.protected[pid] }}
	dcfg := cfg.Detector
	dcfg.Exempt = g.exempt
	g.det = detector.New(dcfg)
	return g, nil
}

// normalized makes the folders absolute and real, and refuses what would
// lose data or hang the host.
func (cfg Config) normalized() (Config, error) {
	if len(cfg.Roots) == 0 {
		return cfg, fmt.Errorf("%w: no folder to protect", ErrConfig)
	}
	if cfg.VaultDir == "" {
		return cfg, fmt.Errorf("%w: no vault folder", ErrConfig)
	}
	vdir, err := filepath.Abs(cfg.VaultDir)
	if err != nil {
		return cfg, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	var roots []string
	for _, r := range cfg.Roots {
		abs, err := filepath.Abs(r)
		if err != nil {
			return cfg, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		if real, err := filepath.EvalSymlinks(abs); err == nil {
			abs = real
		}
		st, err := os.Stat(abs)
		if err != nil {
			return cfg, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		if !st.IsDir() {
			return cfg, fmt.Errorf("%w: %s is not a folder", ErrConfig, abs)
		}
		if vault.Under(vdir, abs) || vault.Under(abs, vdir) {
			return cfg, fmt.Errorf("%w: the vault %s must be outside the protected folder %s", ErrConfig, vdir, abs)
		}
		roots = append(roots, abs)
	}
	cfg.Roots = roots
	cfg.VaultDir = vdir
	self, err := os.Executable()
	if err != nil {
		return cfg, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if cfg.FileServers == nil {
		cfg.FileServers = []string{"smbd"}
	}
	if len(cfg.NFT) == 0 {
		cfg.NFT = []string{"nft"}
	}
	if cfg.CutOffState == "" {
		cfg.CutOffState = filepath.Join(filepath.Dir(vdir), "cutoff.json")
	}
	if err := checkPrograms(roots, append([]string{self, cfg.NFT[0]}, cfg.Programs...)); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// exempt: our own processes are never scored. A `killswitch restore` run by
// the same binary writes files back on purpose and must not look like an attack.
func (g *Guard) exempt(a detector.Actor) bool {
	if g.protected[a.PID] {
		return true
	}
	return g.trusted(a.PID)
}

// trusted reports whether pid is this killswitch binary running one of the
// subcommands that may read the vault and write protected files.
func (g *Guard) trusted(pid int) bool {
	info, err := g.actors.Get(pid)
	if err != nil || len(info.Cmdline) < 2 {
		return false
	}
	if info.Executable != g.selfExe && !slices.Contains(g.cfg.Trusted, info.Executable) {
		return false
	}
	return slices.Contains([]string{"restore", "incidents", "vault"}, info.Cmdline[1])
}

// Run arms the guard and blocks until ctx is done. It returns nil on a
// clean shutdown.
func (g *Guard) Run(ctx context.Context) error {
	for _, r := range g.cfg.Roots {
		if err := fanotify.Probe(r); err != nil {
			return err
		}
	}
	v, err := vault.Open(g.cfg.VaultDir)
	if err != nil {
		return err
	}
	g.vault = v
	defer v.Close()
	if g.perm, err = fanotify.New(fanotify.Permission); err != nil {
		return err
	}
	defer g.perm.Close()
	if g.dirent, err = fanotify.New(fanotify.Dirent); err != nil {
		return err
	}
	defer g.dirent.Close()
	if g.vaultG, err = fanotify.New(fanotify.Permission); err != nil {
		return err
	}
	defer g.vaultG.Close()
	if err := g.protectVault(); err != nil {
		return err
	}
	go g.vaultLoop()
	// Clients cut off before a restart or a reboot stay cut off (nftables
	// did not keep them): the ransomware is still on those machines.
	if list, err := g.firewall().Apply(ctx); err != nil {
		g.cfg.Log.Error("re-applying the cut-off of file-server clients", "state", g.cfg.CutOffState, "err", err)
	} else if len(list) > 0 {
		addrs := make([]string, len(list))
		for i, e := range list {
			addrs[i] = e.Address
		}
		g.cfg.Log.Warn("file-server clients still cut off; 'killswitch cutoff release ADDRESS' once each is clean", "clients", addrs)
	}

	for _, r := range g.cfg.Roots {
		if err := g.markTree(r); err != nil {
			return err
		}
	}
	for i := 0; i < 2; i++ {
		g.workers.Add(1)
		go g.snapshotWorker()
	}
	wake, err := newWaker()
	if err != nil {
		return err
	}
	defer wake.Close()
	loopCtx, stopLoop := context.WithCancel(context.Background())
	defer stopLoop()
	loopDone := make(chan error, 1)
	go func() { loopDone <- g.loop(loopCtx, wake) }()

	start := time.Now()
	n, err := g.baseline(ctx)
	if err == nil {
		err = g.vault.Flush() // armed means every baseline row is committed
	}
	if err != nil {
		stopLoop()
		wake.Wake()
		<-loopDone
		return err
	}
	g.cfg.Log.Info("armed", "roots", g.cfg.Roots, "files", n, "dirs", g.tree.count(), "baseline", time.Since(start).Round(time.Millisecond))
	if g.cfg.Ready != nil {
		g.cfg.Ready()
	}
	var loopErr error
	select {
	case <-ctx.Done():
	case loopErr = <-loopDone:
	}
	stopLoop()
	wake.Wake()
	if loopErr == nil {
		loopErr = <-loopDone
	}
	close(g.snapshots)
	g.workers.Wait()
	g.dropIgnoreJobs()
	g.flushIncidents(true)
	p50, p99 := percentile(g.latencies, 0.50), percentile(g.latencies, 0.99)
	g.cfg.Log.Info("stopped", "perm_p50", p50, "perm_p99", p99, "perm_events", g.stats.PermEvents, "ignore_marks", g.stats.Ignored, "catch_ups", g.stats.CatchUps,
		"close_writes", g.stats.CloseWrites, "incidents", g.stats.Incidents, "overflows", g.stats.Overflows)
	if errors.Is(loopErr, context.Canceled) {
		loopErr = nil
	}
	return loopErr
}

// markTree marks root and every directory below it in both groups.
func (g *Guard) markTree(root string) error {
	return filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if p == root {
				return err
			}
			g.cfg.Log.Warn("skipping unreadable path", "path", p, "err", err)
			return nil
		}
		if !d.IsDir() {
			return nil
		}
		return g.markDir(p)
	})
}

func (g *Guard) markDir(p string) error {
	if err := g.perm.MarkDir(p, fanotify.PermMask); err != nil {
		return err
	}
	if err := g.dirent.MarkDir(p, fanotify.DirentMask); err != nil {
		return err
	}
	key, err := fanotify.DirKey(p)
	if err != nil {
		return err
	}
	g.tree.add(key, p)
	return nil
}

// Stats returns counters (call after Run returns).
func (g *Guard) Stats() Stats { return g.stats }

// Snapshot returns the counters as of the event loop's last pass (at most
// 100 ms old); unlike Stats, it may be called while the guard runs.
func (g *Guard) Snapshot() Stats {
	if s := g.published.Load(); s != nil {
		return *s
	}
	return Stats{}
}

// Latencies returns sampled permission-path decision times.
func (g *Guard) Latencies() []time.Duration { return g.latencies }

// percentile of sampled durations (0 when none).
func percentile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1))]
}

// Incident reads an incident from the guard's vault (the hub agent reports
// its state after a restore).
func (g *Guard) Incident(id string) (vault.Incident, error) { return g.vault.Incident(id) }
