package execblock

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/killswitch-dev/killswitch/internal/fanotify"
	"github.com/killswitch-dev/killswitch/internal/statefile"
)

// Config says where the list is kept and what to watch.
type Config struct {
	// State keeps the list across restarts ("" keeps it in memory only).
	State string
	// Mounts are paths whose filesystems are watched; nil watches every
	// local filesystem, re-reading the mount table every Rescan.
	Mounts []string
	// Deadline is the longest an execution waits for a verdict before it
	// is allowed (default 5 s; hashing runs at disk speed).
	Deadline time.Duration
	// Rescan is how often new mounts are looked for (default 1 min).
	Rescan time.Duration
	// OnDeny is told of refused executions: at once for the first of a
	// binary, then at most once a second with the running count.
	OnDeny func(Denial)
	Log    *slog.Logger
}

// Denial is a refused execution.
type Denial struct {
	Time   time.Time `json:"time"`
	PID    int       `json:"pid"`
	Path   string    `json:"path"`
	SHA256 string    `json:"sha256"`
	Note   string    `json:"note,omitempty"`
	Count  int       `json:"count"` // refusals of this binary so far
}

// Stats counts what the blocker did.
type Stats struct {
	Checked, Hashed, Denied, Late int64
}

// ErrEssential is returned by Block for a binary the host cannot do without.
var ErrEssential = errors.New("execblock: refusing to block a binary this host cannot run without")

type fileKey struct{ dev, ino uint64 }

// verdict is a hash computed for one version of a file.
type verdict struct {
	ctime unix.Timespec
	size  int64
	sum   Sum
}

type denials struct {
	count   int
	last    time.Time
	pending *Denial
}

// Blocker enforces the list. Its methods are safe for concurrent use.
type Blocker struct {
	cfg   Config
	group *fanotify.Group
	jobs  chan fanotify.Event

	mu         sync.Mutex
	list       map[Sum]Entry
	gen        uint64 // bumped when the list changes: clean verdicts in flight are not marked
	verdicts   map[fileKey]verdict
	watched    map[uint64]bool    // devices whose filesystem has a mark
	files      map[fileKey]string // single files blocked (BlockFile), and why
	essential  map[Sum]string     // binaries never blocked, and why
	essKeys    map[fileKey]bool   // the files those are
	denied     map[Sum]*denials
	stats      Stats
	selfKey    fileKey
	watchedAll bool
	stateStamp [3]int64 // the state file as last read or written
}

// workers hash in parallel so that one large binary delays no other
// execution; the queue beyond them is answered "allow" at once.
const (
	workers     = 4
	queueLen    = 1024
	maxVerdicts = 1 << 16
)

// Open loads the saved list and, if it is not empty, starts watching.
// Run must be called for executions to be answered.
func Open(cfg Config) (*Blocker, error) {
	if cfg.Deadline <= 0 {
		cfg.Deadline = 5 * time.Second
	}
	if cfg.Rescan <= 0 {
		cfg.Rescan = time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	b := &Blocker{cfg: cfg, jobs: make(chan fanotify.Event, queueLen), list: map[Sum]Entry{},
		verdicts: map[fileKey]verdict{}, watched: map[uint64]bool{}, denied: map[Sum]*denials{}, files: map[fileKey]string{}}
	b.essential, b.essKeys = essentialBinaries()
	if cfg.State != "" {
		b.stateStamp = stamp(cfg.State) // before reading: an edit in between is taken up later
		entries, err := loadState(cfg.State)
		if err != nil {
			return nil, fmt.Errorf("execblock: %s: %w", cfg.State, err)
		}
		b.list = b.blockable(entries)
	}
	if self, err := os.Executable(); err == nil {
		var st unix.Stat_t
		if unix.Stat(self, &st) == nil {
			b.selfKey = fileKey{st.Dev, st.Ino}
		}
	}
	g, err := fanotify.New(fanotify.Permission)
	if err != nil {
		return nil, err
	}
	b.group = g
	if len(b.list) > 0 {
		if err := b.watch(); err != nil {
			g.Close()
			return nil, err
		}
	}
	return b, nil
}

// essentialBinaries are this program, PID 1 and their ELF interpreters
// (the dynamic loader runs with every dynamic program: blocking it would
// stop the host from running anything).
func essentialBinaries() (map[Sum]string, map[fileKey]bool) {
	out, keys := map[Sum]string{}, map[fileKey]bool{}
	add := func(path, why string) {
		if sum, err := HashFile(path); err == nil {
			out[sum] = why
		}
		var st unix.Stat_t
		if unix.Stat(path, &st) == nil {
			keys[fileKey{st.Dev, st.Ino}] = true
		}
		if f, err := elf.Open(path); err == nil {
			defer f.Close()
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP {
					b := make([]byte, p.Filesz)
					if _, err := p.ReadAt(b, 0); err == nil {
						interp := string(b[:max(0, len(b)-1)]) // NUL-terminated
						if sum, err := HashFile(interp); err == nil {
							out[sum] = "the dynamic loader " + interp
						}
					}
				}
			}
		}
	}
	if self, err := os.Executable(); err == nil {
		add(self, "killswitch itself")
	}
	add("/proc/1/exe", "PID 1 (init)")
	add("/bin/sh", "the system shell /bin/sh")
	return out, keys
}

// BlockFile refuses executions of one file (this inode, whatever its
// name), not of other copies of its bytes: what the guard does to the
// binary of a process tree it stopped, which may be a copy of a shell.
// It is not saved: it lasts as long as this blocker.
func (b *Blocker) BlockFile(path, note string) error {
	if err := checkNote(note); err != nil {
		return fmt.Errorf("execblock: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fmt.Errorf("execblock: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("execblock: %s is not a regular file", path)
	}
	key := fileKey{st.Dev, st.Ino}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.essKeys[key] || key == b.selfKey {
		return fmt.Errorf("%w: %s", ErrEssential, path)
	}
	if !b.watched[st.Dev] {
		if err := b.group.MarkFilesystem(path, fanotify.OpenExecPerm); err != nil {
			return fmt.Errorf("execblock: %w", err)
		}
		b.watched[st.Dev] = true
	}
	b.files[key] = path + ": " + note
	b.gen++
	if err := b.group.FlushInodeMarks(); err != nil {
		return err
	}
	b.cfg.Log.Warn("blocked execution of a file", "path", path, "note", note)
	return nil
}

// Block adds a binary to the list (and saves it); it reports whether the
// binary is new to the list. Executions of that binary are refused from
// the moment it returns.
func (b *Blocker) Block(sum Sum, note string) (bool, error) {
	if err := checkNote(note); err != nil {
		return false, fmt.Errorf("execblock: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if why, ok := b.essential[sum]; ok {
		return false, fmt.Errorf("%w: %s is %s", ErrEssential, sum, why)
	}
	if _, ok := b.list[sum]; ok {
		return false, nil
	}
	b.list[sum] = Entry{SHA256: sum.String(), Note: note, Added: time.Now().UTC()}
	if err := b.watchLocked(); err != nil {
		delete(b.list, sum)
		return false, err
	}
	if err := b.changedLocked(); err != nil {
		delete(b.list, sum)
		return false, err
	}
	b.cfg.Log.Warn("blocked execution of a binary", "sha256", sum.String(), "note", note)
	return true, nil
}

// Unblock removes a binary from the list; it reports whether it was there.
func (b *Blocker) Unblock(sum Sum) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.list[sum]
	if !ok {
		return false, nil
	}
	delete(b.list, sum)
	if err := b.changedLocked(); err != nil {
		b.list[sum] = e
		return false, err
	}
	b.cfg.Log.Warn("unblocked execution of a binary", "sha256", sum.String())
	return true, nil
}

// changedLocked saves the list and forgets every ignore mark: a binary
// found clean before may be blocked now.
func (b *Blocker) changedLocked() error {
	if b.cfg.State != "" {
		entries := b.entriesLocked()
		err := EditState(b.cfg.State, func([]Entry) ([]Entry, error) { return entries, nil })
		if err != nil {
			return fmt.Errorf("execblock: saving %s: %w", b.cfg.State, err)
		}
		b.stateStamp = stamp(b.cfg.State)
	}
	b.gen++
	return b.group.FlushInodeMarks()
}

// stamp identifies a version of the state file (a rename replaces it).
func stamp(path string) [3]int64 {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		return [3]int64{}
	}
	return [3]int64{int64(st.Ino), st.Mtim.Nano(), st.Size}
}

// blockable is the list from a file, without what Block would refuse.
func (b *Blocker) blockable(entries []Entry) map[Sum]Entry {
	list := map[Sum]Entry{}
	for _, e := range entries {
		sum, _ := ParseSum(e.SHA256)
		if why, ok := b.essential[sum]; ok {
			b.cfg.Log.Error("execblock: not blocking an essential binary listed in the file", "sha256", e.SHA256, "is", why)
			continue
		}
		list[sum] = e
	}
	return list
}

// reloadIfEdited takes up a list edited by `killswitch execblock block`.
func (b *Blocker) reloadIfEdited() {
	if b.cfg.State == "" {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := stamp(b.cfg.State)
	if now == b.stateStamp {
		return
	}
	unlock, err := statefile.Lock(b.cfg.State)
	if err != nil {
		return
	}
	entries, err := loadState(b.cfg.State)
	now = stamp(b.cfg.State)
	unlock()
	b.stateStamp = now
	if err != nil {
		b.cfg.Log.Error("execblock: the edited list is unreadable; keeping the current one", "err", err)
		return
	}
	list := b.blockable(entries)
	b.list = list
	b.gen++
	b.group.FlushInodeMarks()
	if len(list) > 0 {
		b.watchLocked()
	}
	b.cfg.Log.Warn("execblock: list reloaded", "blocked", len(list))
}

// List returns the blocked binaries, oldest first.
func (b *Blocker) List() []Entry {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.entriesLocked()
}

func (b *Blocker) entriesLocked() []Entry {
	out := make([]Entry, 0, len(b.list))
	for _, e := range b.list {
		out = append(out, e)
	}
	slices.SortFunc(out, func(x, y Entry) int {
		if c := x.Added.Compare(y.Added); c != 0 {
			return c
		}
		return strings.Compare(x.SHA256, y.SHA256)
	})
	return out
}

// Stats returns the counters so far.
func (b *Blocker) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stats
}

// Watched is the number of filesystems watched.
func (b *Blocker) Watched() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.watched)
}

func (b *Blocker) watch() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.watchLocked()
}

// watchLocked marks every filesystem to watch that is not marked yet.
func (b *Blocker) watchLocked() error {
	paths := b.cfg.Mounts
	if paths == nil {
		var err error
		if paths, err = localMounts("/proc/self/mountinfo"); err != nil {
			return fmt.Errorf("execblock: mount table: %w", err)
		}
		b.watchedAll = true
	}
	var errs []error
	for _, p := range paths {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			errs = append(errs, err)
			continue
		}
		if b.watched[st.Dev] {
			continue
		}
		if err := b.group.MarkFilesystem(p, fanotify.OpenExecPerm); err != nil {
			errs = append(errs, err)
			continue
		}
		b.watched[st.Dev] = true
	}
	if len(b.watched) == 0 {
		return fmt.Errorf("execblock: no filesystem could be watched: %w", errors.Join(errs...))
	}
	for _, err := range errs {
		b.cfg.Log.Warn("execblock: not watched", "err", err)
	}
	return nil
}

// Run answers executions until ctx is done, then releases the group (the
// kernel allows whatever is still pending).
func (b *Blocker) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx) // a read error ends housekeeping too
	var wg sync.WaitGroup
	defer func() {
		cancel()
		b.group.Close()
		close(b.jobs)
		wg.Wait()
	}()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ev := range b.jobs {
				b.decide(ev)
			}
		}()
	}
	go func() {
		<-ctx.Done()
		b.group.Close() // unblocks Read
	}()
	wg.Add(1)
	go func() { defer wg.Done(); b.housekeeping(ctx) }()
	buf := make([]byte, 64<<10)
	var evs []fanotify.Event
	for {
		var err error
		evs, err = b.group.Read(buf, evs)
		if ctx.Err() != nil {
			for i := range evs {
				evs[i].CloseFD()
			}
			return nil
		}
		if err != nil {
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
				continue
			}
			return fmt.Errorf("execblock: %w", err)
		}
		for _, ev := range evs {
			if ev.Mask&fanotify.OpenExecPerm == 0 {
				ev.CloseFD()
				continue
			}
			select {
			case b.jobs <- ev:
			default: // every worker busy and the queue full: never stall the host
				b.group.Respond(int(ev.Fd), true)
				ev.CloseFD()
				b.mu.Lock()
				b.stats.Late++
				b.mu.Unlock()
			}
		}
	}
}

// housekeeping reports coalesced denials and watches new mounts.
func (b *Blocker) housekeeping(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lastScan := time.Now()
	for {
		select {
		case <-ctx.Done():
			b.flushDenials()
			return
		case <-tick.C:
		}
		b.flushDenials()
		b.reloadIfEdited()
		if time.Since(lastScan) >= b.cfg.Rescan {
			lastScan = time.Now()
			b.mu.Lock()
			if b.watchedAll && len(b.list) > 0 {
				b.watchLocked()
			}
			b.mu.Unlock()
		}
	}
}

func (b *Blocker) flushDenials() {
	var out []Denial
	b.mu.Lock()
	for _, d := range b.denied {
		if d.pending != nil && time.Since(d.last) >= time.Second {
			out = append(out, *d.pending)
			d.pending, d.last = nil, time.Now()
		}
	}
	b.mu.Unlock()
	for _, d := range out {
		b.cfg.OnDeny(d)
	}
}

// answer responds to one event exactly once: the worker's verdict, or
// "allow" from the deadline timer if the worker is late.
type answer struct {
	mu   sync.Mutex
	done bool
}

func (a *answer) give(g *fanotify.Group, fd int, allow bool) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.done {
		return false
	}
	a.done = true
	g.Respond(fd, allow)
	return true
}

// deny refuses the execution unless the timer already allowed it, and
// counts the denial before answering, so that denials are numbered in the
// order the executions were refused.
func (a *answer) deny(b *Blocker, fd int, d *Denial, sum Sum) (report, denied bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.done {
		return false, false
	}
	a.done = true
	report = b.countDenial(d, sum)
	b.group.Respond(fd, false)
	return report, true
}

func (b *Blocker) decide(ev fanotify.Event) {
	fd := int(ev.Fd)
	ans := &answer{}
	late := time.AfterFunc(b.cfg.Deadline, func() {
		if ans.give(b.group, fd, true) {
			b.mu.Lock()
			b.stats.Late++
			b.mu.Unlock()
			b.cfg.Log.Warn("execblock: no verdict in time; execution allowed", "pid", ev.Pid, "after", b.cfg.Deadline)
		}
	})
	defer func() {
		late.Stop()
		ans.mu.Lock() // the timer never answers on a closed descriptor
		ans.done = true
		ans.mu.Unlock()
		ev.CloseFD()
	}()

	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		ans.give(b.group, fd, true)
		return
	}
	key := fileKey{st.Dev, st.Ino}
	b.mu.Lock()
	b.stats.Checked++
	gen, empty := b.gen, len(b.list) == 0 && len(b.files) == 0
	v, known := b.verdicts[key]
	fileNote, fileBlocked := b.files[key]
	b.mu.Unlock()
	if fileBlocked {
		path, _ := fanotify.FDPath(ev.Fd)
		b.refuse(ans, fd, Denial{PID: int(ev.Pid), Path: path, Note: fileNote}, Sum{})
		return
	}
	if key == b.selfKey || empty {
		ans.give(b.group, fd, true)
		b.markClean(fd, gen)
		return
	}
	fresh := known && v.ctime == st.Ctim && v.size == st.Size
	if !fresh {
		sum, err := hashFD(fd)
		if err != nil {
			b.cfg.Log.Warn("execblock: cannot hash; execution allowed", "pid", ev.Pid, "err", err)
			ans.give(b.group, fd, true)
			return
		}
		v = verdict{ctime: st.Ctim, size: st.Size, sum: sum}
	}
	b.mu.Lock()
	if !fresh {
		b.stats.Hashed++
		if len(b.verdicts) >= maxVerdicts {
			clear(b.verdicts)
		}
		b.verdicts[key] = v
	}
	entry, blocked := b.list[v.sum]
	b.mu.Unlock()
	if !blocked {
		ans.give(b.group, fd, true)
		b.markClean(fd, gen)
		return
	}
	path, _ := fanotify.FDPath(ev.Fd)
	b.refuse(ans, fd, Denial{PID: int(ev.Pid), Path: path, SHA256: entry.SHA256, Note: entry.Note}, v.sum)
}

// markClean asks the kernel not to report this file again until it is
// modified, unless the list changed since the verdict was reached.
func (b *Blocker) markClean(fd int, gen uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if gen == b.gen {
		b.group.IgnoreUntilModified(fd, fanotify.OpenExecPerm)
	}
}

// refuse denies the execution, then logs and reports it (at most once a
// second per binary; the rest are counted and flushed by housekeeping).
// Nothing happens if the deadline already let it run (that was logged).
func (b *Blocker) refuse(ans *answer, fd int, d Denial, sum Sum) {
	d.Time = time.Now().UTC()
	report, denied := ans.deny(b, fd, &d, sum)
	if !denied {
		return
	}
	b.cfg.Log.Warn("denied execution of a blocked binary", "path", d.Path, "pid", d.PID, "sha256", d.SHA256, "count", d.Count)
	if report && b.cfg.OnDeny != nil {
		b.cfg.OnDeny(d)
	}
}

// countDenial numbers d and says whether to report it now or leave it
// pending for housekeeping.
func (b *Blocker) countDenial(d *Denial, sum Sum) (report bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stats.Denied++
	st := b.denied[sum]
	if st == nil {
		st = &denials{}
		b.denied[sum] = st
	}
	st.count++
	d.Count = st.count
	now := time.Now()
	if now.Sub(st.last) >= time.Second {
		st.last, st.pending = now, nil
		return true
	}
	cp := *d
	st.pending = &cp
	return false
}

// Running lists the processes whose executable is sum right now (a block
// stops new executions; what already runs is the responder's business).
func (b *Blocker) Running(sum Sum) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	byFile := map[fileKey]bool{}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe := "/proc/" + e.Name() + "/exe"
		var st unix.Stat_t
		if unix.Stat(exe, &st) != nil {
			continue
		}
		key := fileKey{st.Dev, st.Ino}
		match, ok := byFile[key]
		if !ok {
			got, err := HashFile(exe)
			match = err == nil && got == sum
			byFile[key] = match
		}
		if match {
			pids = append(pids, pid)
		}
	}
	return pids
}

// hashBufs are hashFD's read buffers, reused: every binary run for the
// first time is hashed.
var hashBufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// HashFile returns the SHA-256 of the file at path.
func HashFile(path string) (Sum, error) {
	f, err := os.Open(path)
	if err != nil {
		return Sum{}, err
	}
	defer f.Close()
	return hashFD(int(f.Fd()))
}

// hashFD hashes a file from its start with pread, leaving the offset of a
// descriptor shared with the kernel alone.
func hashFD(fd int) (Sum, error) {
	h := sha256.New()
	bp := hashBufs.Get().(*[]byte)
	defer hashBufs.Put(bp)
	buf := *bp
	var off int64
	for {
		n, err := unix.Pread(fd, buf, off)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return Sum{}, err
		}
		if n == 0 {
			break
		}
		h.Write(buf[:n])
		off += int64(n)
	}
	var sum Sum
	h.Sum(sum[:0])
	return sum, nil
}
