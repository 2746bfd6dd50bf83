package guard

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/killswitch-dev/killswitch/internal/content"
	"github.com/killswitch-dev/killswitch/internal/fanotify"
	"github.com/killswitch-dev/killswitch/internal/vault"
)

// preserve stores the content of the open file fd as path's current
// version, unless the vault already holds it. It reads with pread from
// offset 0, so descriptors handed over by fanotify (which never raise
// events themselves) can be used as they are.
func (g *Guard) preserve(fd int, path, reason, actorID, exe string) (fileState, error) {
	for attempt := 0; ; attempt++ {
		st, err := fstat(fd)
		if err != nil {
			return fileState{}, err
		}
		if !isRegular(st) {
			return fileState{}, nil
		}
		k := statKey(st)
		prev, known := g.files.get(k)
		if known && prev.matches(st) && prev.path == path {
			return prev, nil
		}
		hash, _, err := g.vault.StoreFD(fd, st.Size)
		if err != nil {
			return fileState{}, err
		}
		s := stateOf(path, hash, st)
		if after, err := fstat(fd); err == nil && !s.matches(after) && attempt == 0 {
			// Written while we read: what we stored may be torn. Read once
			// more; a writer still at work will close-write again anyway.
			continue
		}
		// Only a baseline or rescan may meet a version an earlier run
		// already recorded; a close-write is new by definition.
		rerun := !known && (reason == "baseline" || reason == "rescan")
		s.seq = g.record(s, rerun, reason, actorID, exe)
		if st.Nlink > 0 {
			// A file deleted since its close-write keeps its version in the
			// vault, but no place in the table of current files (its inode
			// number may already belong to another file).
			g.files.put(k, s)
		}
		return s, nil
	}
}

// record queues a content row and returns its sequence number (0 when no
// row was needed). When the guard knew nothing of the inode (baseline,
// rescan: the vault may hold it from an earlier run), it first checks that
// the newest row of path is not the same version already.
func (g *Guard) record(s fileState, checkIndex bool, reason, actorID, exe string) uint64 {
	if checkIndex {
		if last, err := g.vault.Latest(s.path, time.Time{}); err == nil && last.Kind == vault.Content && last.Hash == s.hash &&
			last.Mode == os.FileMode(s.mode) && last.MTime.UnixNano() == s.mtime {
			return 0
		}
	}
	return g.vault.Queue(vault.Version{Path: s.path, Time: time.Now(), Kind: vault.Content, Hash: s.hash, Size: s.size,
		Mode: os.FileMode(s.mode), UID: s.uid, GID: s.gid, MTime: time.Unix(0, s.mtime), Actor: actorID, Exe: exe, Reason: reason})
}

// sample reads the head of an open file for the detector, into a buffer
// the loop reuses (the detector keeps no reference to it).
func (g *Guard) sample(fd int) []byte {
	if g.sampleBuf == nil {
		g.sampleBuf = make([]byte, content.SampleSize)
	}
	n, _ := unix.Pread(fd, g.sampleBuf, 0)
	if n < 0 {
		n = 0
	}
	return g.sampleBuf[:n]
}

// baseline preserves every file of the protected trees, reporting progress.
func (g *Guard) baseline(ctx context.Context) (int, error) {
	n := 0
	last := time.Now()
	for _, root := range g.cfg.Roots {
		err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil || !d.Type().IsRegular() {
				return nil
			}
			g.preservePath(p, "baseline")
			n++
			if g.cfg.Progress != nil && time.Since(last) > time.Second {
				fmt.Fprintf(g.cfg.Progress, "baseline: %d files preserved...\n", n)
				last = time.Now()
			}
			return nil
		})
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// preservePath opens a path without following links and preserves it.
func (g *Guard) preservePath(p, reason string) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NOATIME|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		fd, err = unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	}
	if err != nil {
		return // vanished or unreadable: nothing to preserve
	}
	defer unix.Close(fd)
	if _, err := g.preserve(fd, p, reason, "", ""); err != nil {
		g.cfg.Log.Warn("could not preserve", "path", p, "err", err)
	}
}

// snapJob asks a worker to preserve a large file after close-write.
type snapJob struct {
	fd           int
	path         string
	actorID, exe string
}

func (g *Guard) snapshotWorker() {
	defer g.workers.Done()
	for j := range g.snapshots {
		s, err := g.preserve(j.fd, j.path, "close-write", j.actorID, j.exe)
		if err != nil {
			g.cfg.Log.Warn("could not preserve", "path", j.path, "err", err)
			unix.Close(j.fd)
			continue
		}
		select {
		case g.toIgnore <- ignoreJob{fd: j.fd, state: s}:
		default:
			unix.Close(j.fd)
		}
	}
}

// ignoreJob is a version a worker preserved: its file needs no permission
// events until it is modified again.
type ignoreJob struct {
	fd    int
	state fileState
}

// placeIgnoreMarks runs in the loop. A file written and preserved gets its
// ignore mark now, rather than at its next open: that open (typically a
// read of what was just written) then costs the opener nothing. A mark is
// placed only once the version's index row is committed, only while
// nothing is suspicious, and only if the file is still that version.
func (g *Guard) placeIgnoreMarks() {
	for more := true; more; {
		select {
		case j := <-g.toIgnore:
			g.pendingIgnore = append(g.pendingIgnore, j)
		default:
			more = false
		}
	}
	if len(g.pendingIgnore) == 0 {
		return
	}
	cold := time.Now().After(g.hotUntil)
	committed := g.vault.Committed()
	keep := g.pendingIgnore[:0]
	for _, j := range g.pendingIgnore {
		if cold && j.state.seq > committed {
			keep = append(keep, j) // its row is not on disk yet
			continue
		}
		if cold {
			g.ignoreIfUnchanged(j)
		}
		unix.Close(j.fd)
	}
	g.pendingIgnore = keep
}

func (g *Guard) ignoreIfUnchanged(j ignoreJob) {
	st, err := fstat(j.fd)
	if err != nil || !j.state.matches(st) {
		return
	}
	if cur, ok := g.files.get(statKey(st)); !ok || !cur.matches(st) {
		return
	}
	if !g.ignoreUntilModified(j.fd, statKey(st), j.state.path) {
		return
	}
	// A write between the check and the mark would not have cleared it.
	if st2, err := fstat(j.fd); err != nil || !j.state.matches(st2) {
		g.perm.StopIgnoringFD(j.fd, fanotify.OpenPerm)
		g.stats.Ignored--
		delete(g.ignored, statKey(st))
	}
}

// dropIgnoreJobs releases the descriptors of marks never placed.
func (g *Guard) dropIgnoreJobs() {
	for _, j := range g.pendingIgnore {
		unix.Close(j.fd)
	}
	g.pendingIgnore = nil
	for {
		select {
		case j := <-g.toIgnore:
			unix.Close(j.fd)
		default:
			return
		}
	}
}

// rescan re-preserves whatever changed while events were lost.
func (g *Guard) rescan() {
	if !g.rescanMu.TryLock() {
		return
	}
	defer g.rescanMu.Unlock()
	for _, root := range g.cfg.Roots {
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if d.IsDir() {
				if !g.tree.has(p) {
					g.markDir(p)
				}
				return nil
			}
			if d.Type().IsRegular() {
				g.preservePath(p, "rescan")
			}
			return nil
		})
	}
}

// protectVault denies every other process access to the vault's files.
func (g *Guard) protectVault() error {
	return filepath.WalkDir(g.cfg.VaultDir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		return g.vaultG.MarkDir(p, fanotify.OpenPerm|fanotify.OnChild)
	})
}
