package guard

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/killswitch-dev/killswitch/internal/actor"
	"github.com/killswitch-dev/killswitch/internal/alert"
	"github.com/killswitch-dev/killswitch/internal/content"
	"github.com/killswitch-dev/killswitch/internal/cutoff"
	"github.com/killswitch-dev/killswitch/internal/detector"
	"github.com/killswitch-dev/killswitch/internal/execblock"
	"github.com/killswitch-dev/killswitch/internal/fanotify"
	"github.com/killswitch-dev/killswitch/internal/vault"
)

// hotFor is how long after a finding the guard stops placing ignore marks,
// so that every open of a suspect goes through the permission path.
const hotFor = time.Minute

// maxIgnored bounds the ignore marks the guard keeps track of (and so
// the work of removing them all when it heats up).
const maxIgnored = 1 << 17

// maxLatencySamples bounds the latency record.
const maxLatencySamples = 1 << 20

// loop handles every event in arrival order until ctx is done.
func (g *Guard) loop(ctx context.Context, wake *waker) error {
	bufP := make([]byte, 256<<10)
	bufD := make([]byte, 256<<10)
	var evsP, evsD []fanotify.Event
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		ready, err := fanotify.Poll(100, g.perm.FD(), g.dirent.FD(), wake.fd())
		if err != nil {
			return err
		}
		// Permission-group events in their order; before answering an open,
		// the directory events queued so far are handled, so that the
		// opener's earlier deletes and renames are judged first. (Draining
		// them before the whole batch instead would judge a rename before
		// the close-write of the file it moves.)
		if ready[0] {
			evsP, err = g.perm.TryRead(bufP, evsP)
			if err != nil {
				g.cfg.Log.Error("reading permission events", "err", err)
			}
			for i := range evsP {
				ev := &evsP[i]
				if ev.Mask&fanotify.OpenPerm != 0 {
					evsD = g.drainDirent(bufD, evsD)
				}
				g.handlePerm(ev)
				ev.CloseFD()
			}
		}
		evsD = g.drainDirent(bufD, evsD)
		g.flushIncidents(false)
		g.placeIgnoreMarks()
		if s := g.published.Load(); s == nil || *s != g.stats {
			snap := g.stats
			g.published.Store(&snap)
		}
	}
}

func (g *Guard) drainDirent(buf []byte, evs []fanotify.Event) []fanotify.Event {
	for i := 0; i < 64; i++ {
		var err error
		evs, err = g.dirent.TryRead(buf, evs)
		if err != nil {
			g.cfg.Log.Error("reading directory events", "err", err)
			return evs
		}
		if len(evs) == 0 {
			return evs
		}
		for j := range evs {
			g.handleDirent(&evs[j])
		}
	}
	return evs
}

// vaultLoop answers opens of the vault's files. It runs on its own: the
// main loop itself writes to the vault and must never wait on itself.
func (g *Guard) vaultLoop() {
	buf := make([]byte, 16<<10)
	var evs []fanotify.Event
	for {
		var err error
		evs, err = g.vaultG.Read(buf, evs)
		if err != nil {
			return // closed
		}
		for i := range evs {
			g.handleVaultAccess(&evs[i])
		}
	}
}

func (g *Guard) handleVaultAccess(ev *fanotify.Event) {
	if ev.Mask&fanotify.OpenPerm == 0 {
		ev.CloseFD()
		return
	}
	allow := int(ev.Pid) == g.self || g.trusted(int(ev.Pid))
	if !allow {
		p, _ := fanotify.FDPath(ev.Fd)
		info, _ := g.actors.Get(int(ev.Pid))
		g.cfg.Log.Warn("denied vault access", "pid", ev.Pid, "exe", info.Executable, "path", p)
	}
	g.vaultG.Respond(int(ev.Fd), allow)
	ev.CloseFD()
}

// handlePerm answers permission events and judges close-writes.
func (g *Guard) handlePerm(ev *fanotify.Event) {
	if ev.Mask&fanotify.QueueOverflow != 0 {
		g.overflow("permission")
		return
	}
	if ev.Mask&fanotify.OpenPerm != 0 {
		start := time.Now()
		allow := g.decideOpen(ev)
		if err := g.perm.Respond(int(ev.Fd), allow); err != nil {
			g.cfg.Log.Error("answering permission event", "err", err)
		}
		took := time.Since(start)
		g.metrics.permLatency.Observe(took.Seconds())
		if len(g.latencies) < maxLatencySamples {
			g.latencies = append(g.latencies, took)
		}
		g.stats.PermEvents++
	}
	if ev.Mask&fanotify.CloseWrite != 0 {
		g.handleCloseWrite(ev)
	}
}

// decideOpen is the permission path: it must be fast when nothing needs
// doing, and it makes sure the vault holds the file's current version
// before anyone may open it.
func (g *Guard) decideOpen(ev *fanotify.Event) bool {
	pid := int(ev.Pid)
	if pid == g.self {
		return true
	}
	if _, ok := g.frozen[pid]; ok {
		return false
	}
	// Learn who the opener is while it is certainly alive (it is waiting
	// for us): a short-lived writer, one process per file, may be gone by
	// the time its close-write is judged.
	g.actors.Lineage(pid)
	st, err := fstat(int(ev.Fd))
	if err != nil || !isRegular(st) {
		return true
	}
	if st.Size == 0 {
		return true // nothing to lose (a new file, or one already emptied)
	}
	s, ok := g.files.get(statKey(st))
	if !ok || !s.matches(st) {
		// Stale or unknown: catch up before the opener can change it.
		p, err := fanotify.FDPath(ev.Fd)
		if err != nil || !g.inTree(p) {
			return true
		}
		s, err = g.preserve(int(ev.Fd), p, "catch-up", "", "")
		if err != nil {
			g.cfg.Log.Warn("catch-up failed", "path", p, "err", err)
			return true // never stall a writer on our own failure
		}
		g.stats.CatchUps++
	}
	if s.seq > g.vault.Committed() {
		// The version is in the vault but its index row is still queued:
		// commit it before the opener can destroy the file.
		if err := g.vault.Flush(); err != nil {
			g.cfg.Log.Error("committing the vault index", "err", err)
		}
	}
	if time.Now().After(g.hotUntil) && s.matches(st) {
		g.ignoreUntilModified(int(ev.Fd), statKey(st), s.path)
	}
	return true
}

// ignoreUntilModified spares the file open as fd permission events until
// it is next modified, and remembers it (to undo if the guard heats up).
func (g *Guard) ignoreUntilModified(fd int, k fileKey, path string) bool {
	if len(g.ignored) >= maxIgnored || g.perm.IgnoreUntilModified(fd, fanotify.OpenPerm) != nil {
		return false
	}
	g.stats.Ignored++
	g.ignored[k] = path
	return true
}

// blockExec has the blocker process deny further executions of exe (not
// our own binary, nor a trusted one, nor a system shell or interpreter:
// those are shared by everyone, and stopping the process tree was the
// answer). The blocker is a process of its own: this one starts programs
// (restore, nft) and so must never answer execution events itself.
func (g *Guard) blockExec(exe, incident string) bool {
	if !g.cfg.BlockExec || g.cfg.ExecBlocker == nil || exe == "" || exe == g.selfExe || slices.Contains(g.cfg.Trusted, exe) {
		return false
	}
	if strings.HasPrefix(exe, "/usr/") || strings.HasPrefix(exe, "/bin/") || strings.HasPrefix(exe, "/sbin/") || strings.HasPrefix(exe, "/lib") {
		g.cfg.Log.Warn("not blocking a system binary; its process tree was stopped", "exe", exe)
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := g.cfg.ExecBlocker.BlockFile(ctx, exe, "incident "+incident); err != nil {
		g.cfg.Log.Error("cannot block further executions", "exe", exe, "err", err)
		return false
	}
	g.cfg.Log.Warn("blocked further executions", "exe", exe)
	return true
}

func (g *Guard) inTree(p string) bool {
	for _, r := range g.cfg.Roots {
		if vault.Under(p, r) {
			return true
		}
	}
	return false
}

// handleCloseWrite judges the new content and preserves it.
func (g *Guard) handleCloseWrite(ev *fanotify.Event) {
	pid := int(ev.Pid)
	if pid == g.self {
		return
	}
	g.stats.CloseWrites++
	st, err := fstat(int(ev.Fd))
	if err != nil || !isRegular(st) {
		return
	}
	p, err := fanotify.FDPath(ev.Fd)
	if err != nil || !g.inTree(p) {
		return
	}
	lineage := g.lineage(pid)
	actorID, exe := "", ""
	if len(lineage) > 0 {
		actorID, exe = lineage[0].ID, lineage[0].Executable
	}
	k := statKey(st)
	prev, hadPrev := g.files.get(k)
	if !hadPrev {
		// A new inode at a known path (write-new then rename is handled by
		// rename events; this is O_TRUNC of a replaced file).
		if _, s, ok := g.files.lookupPath(p); ok {
			prev, hadPrev = s, true
		}
	}
	if hadPrev && prev.size == 0 {
		hadPrev = false // an empty file had nothing to lose: this is new content
	}
	post := g.sample(int(ev.Fd))
	var pre []byte
	if hadPrev && prev.hash != "" && detector.NeedsPre(post) {
		pre, _ = g.vault.Head(prev.hash, content.SampleSize)
	}
	dev := detector.Event{Time: time.Now(), Lineage: lineage, Op: detector.Write, Path: p,
		Pre: pre, Post: post, Preserved: hadPrev}
	if hadPrev {
		dev.PreHash = prev.hash
		if pre == nil {
			dev.Pre = []byte{} // an existing file whose old content the verdict does not need
		}
	}
	if int64(len(post)) == st.Size {
		// The sample is the whole file: its hash is the one the vault will
		// store (ransom notes are recognised by it).
		sum := sha256.Sum256(post)
		dev.PostHash = hex.EncodeToString(sum[:])
	}
	// The vault copy is made by a worker, in parallel with the loop; the
	// permission path catches up if the file is opened before that.
	if fd, err := unix.Dup(int(ev.Fd)); err == nil {
		select {
		case g.snapshots <- snapJob{fd: fd, path: p, actorID: actorID, exe: exe}:
		default:
			unix.Close(fd) // workers saturated: the permission path catches up
		}
	}
	g.observe(dev)
}

// observe feeds the detector and acts on its decision.
func (g *Guard) observe(ev detector.Event) {
	d, finding := g.det.Observe(ev)
	if finding.Alarming() {
		g.heat()
	}
	if d != nil {
		g.stop(d)
	}
}

// heat turns off ignore marks while something suspicious is going on:
// the ones in place are removed one by one (FAN_MARK_FLUSH would also drop
// the directory marks, and events would be lost until they were back), so
// that every open asks again.
func (g *Guard) heat() {
	wasCold := time.Now().After(g.hotUntil)
	g.hotUntil = time.Now().Add(hotFor)
	if !wasCold {
		return
	}
	for k, p := range g.ignored {
		if err := g.perm.StopIgnoring(p, fanotify.OpenPerm); err != nil {
			g.cfg.Log.Warn("removing an ignore mark", "path", p, "err", err)
		}
		delete(g.ignored, k)
	}
}

func (g *Guard) lineage(pid int) []detector.Actor {
	infos := g.actors.Lineage(pid)
	out := make([]detector.Actor, len(infos))
	for i, in := range infos {
		out[i] = detector.Actor{ID: in.ID.String(), PID: in.PID, Executable: in.Executable, Server: g.isServer(in)}
	}
	return out
}

// isServer reports whether a process is a file server's, serving a remote
// client: named in FileServers and holding a connection accepted on a
// file-sharing port. The name alone is not enough: ransomware that ran
// each file's encryption in a child it called smbd would stop its own
// process from being scored. Binding port 445 or 139 takes privilege.
// Decided once per process.
func (g *Guard) isServer(in actor.Info) bool {
	if !slices.Contains(g.cfg.FileServers, filepath.Base(in.Executable)) {
		return false
	}
	return g.clientOf(in.ID.String(), in.PID).IsValid()
}

// clientOf is the remote client a process serves (invalid for none),
// looked up once per process: stop cuts that client off.
func (g *Guard) clientOf(id string, pid int) netip.Addr {
	if addr, ok := g.servers[id]; ok {
		return addr
	}
	addr, _ := cutoff.Peer("/proc", pid)
	if len(g.servers) >= maxServers {
		clear(g.servers)
	}
	g.servers[id] = addr
	return addr
}

// maxServers bounds the server verdicts kept (one per process seen).
const maxServers = 4096

// handleDirent keeps the tree and the vault's names in step with the
// filesystem and reports deletions and renames to the detector.
func (g *Guard) handleDirent(ev *fanotify.Event) {
	if ev.Mask&fanotify.QueueOverflow != 0 {
		g.overflow("directory")
		return
	}
	g.stats.Dirents++
	dir, ok := g.tree.path(ev.Dir)
	isDir := ev.Mask&fanotify.OnDir != 0
	pid := int(ev.Pid)
	now := time.Now()
	switch {
	case ev.Mask&fanotify.Create != 0:
		if ok && isDir {
			p := filepath.Join(dir, ev.Name)
			if err := g.markTree(p); err == nil {
				go g.preserveTree(p) // files made before the mark took hold
			}
		}
		if actor, frozen := g.frozen[pid]; ok && !isDir && frozen {
			// A stopped process's last create: O_CREAT makes the file
			// before the open's permission event, and a process killed
			// while that event waits takes the event with it. The file
			// is the attacker's, for restore to remove. (Its process may
			// be gone: the stopped actor stands for it.)
			g.observe(detector.Event{Time: now, Lineage: []detector.Actor{actor}, Op: detector.Write, Path: filepath.Join(dir, ev.Name)})
		}
	case ev.Mask&fanotify.Delete != 0:
		if !ok {
			return
		}
		p := filepath.Join(dir, ev.Name)
		if isDir {
			g.tree.remove(p)
			return
		}
		s, had := g.files.removePath(p)
		if had {
			g.vault.Queue(vault.Version{Path: p, Time: now, Kind: vault.Deleted, Reason: "delete"})
		}
		if pid != g.self {
			g.observe(detector.Event{Time: now, Lineage: g.lineage(pid), Op: detector.Delete, Path: p,
				Preserved: had, PreHash: s.hash})
		}
	case ev.Mask&fanotify.Rename != 0:
		newDir, newOK := g.tree.path(ev.NewDir)
		from, to := "", ""
		if ok {
			from = filepath.Join(dir, ev.Name)
		}
		if newOK {
			to = filepath.Join(newDir, ev.NewName)
		}
		g.rename(from, to, isDir, pid, now)
	}
}

// rename moves names in the tree, the file table and the vault's index.
// Either side may be outside the protected trees ("").
func (g *Guard) rename(from, to string, isDir bool, pid int, now time.Time) {
	switch {
	case from == "" && to == "":
		return
	case from == "": // moved in from outside: new content to preserve
		if isDir {
			g.markTree(to)
			go g.preserveTree(to)
		} else {
			go g.preservePath(to, "moved-in")
		}
		return
	case to == "": // moved out: as good as deleted for the tree
		if isDir {
			g.tree.remove(from)
			for _, p := range g.files.removePrefix(from) {
				g.vault.Queue(vault.Version{Path: p, Time: now, Kind: vault.Deleted, Reason: "moved-out"})
			}
			return
		}
		if s, had := g.files.removePath(from); had {
			g.vault.Queue(vault.Version{Path: from, Time: now, Kind: vault.Deleted, Reason: "moved-out"})
			g.observe(detector.Event{Time: now, Lineage: g.lineage(pid), Op: detector.Delete, Path: from, Preserved: true, PreHash: s.hash})
		}
		return
	}
	if isDir {
		g.tree.move(from, to)
	}
	_, replacedState, replaced := g.files.lookupPath(to)
	if replaced && !isDir {
		g.files.removePath(to)
	}
	moved, states := g.files.move(from, to, isDir)
	var rows []vault.Version
	for i, m := range moved {
		s := states[i]
		rows = append(rows,
			vault.Version{Path: m[0], Time: now, Kind: vault.Moved, NewPath: m[1], Reason: "rename"},
			vault.Version{Path: m[1], Time: now, Kind: vault.Content, Hash: s.hash, Size: s.size, Mode: os.FileMode(s.mode),
				UID: s.uid, GID: s.gid, MTime: time.Unix(0, s.mtime), Reason: "rename"})
	}
	if len(rows) > 0 {
		g.vault.Queue(rows...)
	}
	if isDir || pid == g.self {
		return
	}
	var preHash string
	if len(states) == 1 {
		preHash = states[0].hash
	}
	ev := detector.Event{Time: now, Lineage: g.lineage(pid), Op: detector.Rename, Path: from, NewPath: to,
		Preserved: len(moved) > 0, Replaced: replaced, PreHash: preHash}
	if replaced {
		ev.PostHash = replacedState.hash // what the rename destroyed
	}
	g.observe(ev)
}

func (g *Guard) preserveTree(root string) {
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			g.preservePath(p, "new-folder")
		}
		return nil
	})
}

// overflow reports lost events and re-synchronises the vault.
func (g *Guard) overflow(which string) {
	g.stats.Overflows++
	g.cfg.Log.Warn("fanotify queue overflow: events were lost; rescanning", "queue", which)
	g.cfg.Alerts.Write(alert.Alert{Timestamp: time.Now().UTC(),
		Message:    "killswitch guard: the kernel dropped " + which + " events (queue overflow); the guard keeps running and rescans the protected folders",
		Event:      alert.Event{Kind: "alert", Action: alert.ActionQueueOverflow, Category: []string{"file"}, Severity: 47},
		Killswitch: alert.Killswitch{Dropped: true}})
	g.heat()
	go g.rescan()
}

// stop freezes the decided lineage at once, then records and reports.
func (g *Guard) stop(d *detector.Decision) {
	frozenAt := time.Now()
	// A file server's process: its client's address, read while its
	// connection is still open.
	var client netip.Addr
	var cut chan error
	if d.Actor.Server {
		if client = g.clientOf(d.Actor.ID, d.Actor.PID); !client.IsValid() {
			g.cfg.Log.Error("the client of the stopped file-server process is unknown; it is not cut off", "pid", d.Actor.PID)
		}
	}
	pids, err := g.resp.Freeze(d.Actor.PID)
	if err != nil {
		g.cfg.Log.Error("freezing", "pid", d.Actor.PID, "err", err)
	}
	for _, pid := range pids {
		g.frozen[pid] = d.Actor
	}
	// Kill, and hash the binary as it ran (its path may be gone or
	// replaced by then) for the hub to block it by hash. Off the loop: the
	// binary may lie in a protected folder, and only the loop can answer
	// our own open of it.
	exeSum := make(chan string, 1)
	go func() {
		sum := ""
		exe, err := os.Open("/proc/" + itoa(d.Actor.PID) + "/exe")
		g.resp.Kill(pids)
		if err == nil {
			// A file server's binary is not the attacker's (that runs on
			// its client): nothing to block by hash.
			if !d.Actor.Server {
				if s, err := execblock.HashFile("/proc/self/fd/" + itoa(int(exe.Fd()))); err == nil {
					sum = s.String()
				}
			}
			exe.Close()
		}
		exeSum <- sum
	}()
	blocked := false
	if client.IsValid() {
		cut = make(chan error, 1)
		go func() { cut <- g.cutOff(client, d.Actor.Executable, d.Incident) }()
	} else if !d.Actor.Server {
		blocked = g.blockExec(d.Actor.Executable, d.Incident)
	}
	g.stats.Incidents++
	info, _ := g.actors.Get(d.Actor.PID)
	inc := vault.Incident{ID: d.Incident, Opened: frozenAt, FrozenAt: frozenAt, State: vault.StateOpen, Actor: d.Actor,
		Cmdline: info.Cmdline, Stopped: pids, Score: d.Score, Indicators: d.Indicators, Damaged: d.Damaged,
		FirstEvent: d.FirstEvent, Files: d.History, ExecBlocked: blocked}
	var source *alert.Source
	what := "it was encrypting or destroying files"
	if client.IsValid() {
		inc.Client = client.String()
		source = &alert.Source{IP: inc.Client}
		what = "it was encrypting or destroying files for the client " + inc.Client + ", which is being cut off from the file-sharing ports"
	}
	if err := g.vault.SaveIncident(inc); err != nil {
		g.cfg.Log.Error("saving incident", "incident", inc.ID, "err", err)
	}
	sample := ""
	if len(d.Damaged) > 0 {
		sample = d.Damaged[0]
	}
	parent := &alert.Parent{PID: info.PPID}
	g.cfg.Alerts.Write(alert.Alert{Timestamp: frozenAt.UTC(),
		Message: "killswitch stopped " + d.Actor.Executable + " (pid " + itoa(d.Actor.PID) + "): " + what + "; restore with: killswitch restore --incident " + d.Incident,
		Event: alert.Event{Kind: "alert", Action: alert.ActionRansomwareStopped, Category: []string{"malware", "file"},
			Type: []string{"denied", "deletion"}, Severity: 99},
		Process: &alert.Process{PID: d.Actor.PID, Executable: d.Actor.Executable, Args: info.Cmdline,
			CommandLine: strings.Join(info.Cmdline, " "), Parent: parent},
		File: &alert.File{Path: sample}, Source: source,
		Killswitch: alert.Killswitch{Incident: d.Incident, Score: d.Score, Indicators: d.Indicators,
			FilesDamaged: len(d.Damaged), StoppedPIDs: pids, ExecBlocked: blocked}})
	g.cfg.Log.Warn("STOPPED ransomware-like activity", "incident", d.Incident, "pid", d.Actor.PID, "exe", d.Actor.Executable,
		"files_damaged", len(d.Damaged), "score", d.Score, "restore", "killswitch restore --incident "+d.Incident)
	// Events the tree made before it froze are still queued: record them
	// into the incident once they have been read.
	g.pending = append(g.pending, pendingIncident{inc: inc, actor: d.Actor.ID, at: frozenAt, exeSum: exeSum, cut: cut})
}

// flushIncidents completes incidents whose in-flight events have arrived.
func (g *Guard) flushIncidents(all bool) {
	keep := g.pending[:0]
	for _, p := range g.pending {
		if !all && time.Since(p.at) < 300*time.Millisecond {
			keep = append(keep, p)
			continue
		}
		if p.cut != nil {
			select {
			case err := <-p.cut:
				p.cut = nil
				p.inc.ClientCutOff = err == nil
				if err != nil {
					p.inc.CutOffError = err.Error()
				}
			default:
				if !all && time.Since(p.at) < 5*time.Second { // nft is still running
					keep = append(keep, p)
					continue
				}
			}
		}
		select {
		case p.inc.ExeSHA256 = <-p.exeSum:
		default:
			if !all && time.Since(p.at) < 5*time.Second { // a large binary is still being hashed
				keep = append(keep, p)
				continue
			}
		}
		p.inc.Files = g.det.History(p.actor)
		if err := g.vault.SaveIncident(p.inc); err != nil {
			g.cfg.Log.Error("saving incident", "incident", p.inc.ID, "err", err)
		}
		if g.cfg.OnIncident != nil {
			g.cfg.OnIncident(p.inc)
		}
	}
	g.pending = keep
}

// cutOff drops the client's traffic to the file-sharing ports, then
// stops the server's other processes serving it (the one caught is
// already stopped). Off the loop: nft takes milliseconds.
func (g *Guard) cutOff(client netip.Addr, executable, incident string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := g.firewall().Block(ctx, client, incident)
	if err != nil {
		g.cfg.Log.Error("cutting the client off", "client", client, "err", err)
	} else {
		g.cfg.Log.Warn("client cut off from the file-sharing ports", "client", client, "release", "killswitch cutoff release "+client.String())
	}
	for _, pid := range cutoff.Serving("/proc", executable, client) {
		if pids, err := g.resp.Freeze(pid); err == nil {
			g.resp.Kill(pids)
		}
	}
	return err
}

func (g *Guard) firewall() cutoff.Firewall {
	return cutoff.Firewall{NFT: g.cfg.NFT, State: g.cfg.CutOffState}
}

func itoa(i int) string { return strconv.Itoa(i) }
