package guard

import (
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/killswitch-dev/killswitch/internal/vault"
)

// tree maps fanotify directory keys to paths and back.
type tree struct {
	mu    sync.Mutex
	byKey map[string]string
	byDir map[string]string
}

func newTree() *tree { return &tree{byKey: map[string]string{}, byDir: map[string]string{}} }

func (t *tree) add(key, dir string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.byKey[key] = dir
	t.byDir[dir] = key
}

func (t *tree) path(key string) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.byKey[key]
	return p, ok
}

// move renames a directory and everything below it.
func (t *tree) move(from, to string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for dir, key := range t.byDir {
		if vault.Under(dir, from) {
			nd := to + dir[len(from):]
			delete(t.byDir, dir)
			t.byDir[nd] = key
			t.byKey[key] = nd
		}
	}
}

// remove forgets a directory and everything below it.
func (t *tree) remove(dir string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for d, key := range t.byDir {
		if vault.Under(d, dir) {
			delete(t.byDir, d)
			delete(t.byKey, key)
		}
	}
}

func (t *tree) has(dir string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.byDir[dir]
	return ok
}

func (t *tree) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byDir)
}

// fileKey identifies an inode.
type fileKey struct{ dev, ino uint64 }

// fileState is what the vault holds as a file's current version.
type fileState struct {
	path     string
	hash     string
	size     int64
	mtime    int64
	ctime    int64
	mode     uint32
	uid, gid int
	seq      uint64 // the vault row's sequence number (see vault.Queue)
}

func statKey(st *unix.Stat_t) fileKey { return fileKey{uint64(st.Dev), st.Ino} }

// matches reports whether the vault's version is the file's current content.
func (s fileState) matches(st *unix.Stat_t) bool {
	return s.size == st.Size && s.mtime == st.Mtim.Nano() && s.ctime == st.Ctim.Nano()
}

func stateOf(path, hash string, st *unix.Stat_t) fileState {
	return fileState{path: path, hash: hash, size: st.Size, mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano(),
		mode: st.Mode, uid: int(st.Uid), gid: int(st.Gid)}
}

// fileTable is the vault's current version of each protected file, by
// inode (the permission path has only a descriptor) and by path.
type fileTable struct {
	mu     sync.Mutex
	byKey  map[fileKey]fileState
	byPath map[string]fileKey
}

func newFileTable() *fileTable {
	return &fileTable{byKey: map[fileKey]fileState{}, byPath: map[string]fileKey{}}
}

func (f *fileTable) get(k fileKey) (fileState, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.byKey[k]
	return s, ok
}

func (f *fileTable) lookupPath(p string) (fileKey, fileState, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k, ok := f.byPath[p]
	if !ok {
		return k, fileState{}, false
	}
	s, ok := f.byKey[k]
	return k, s, ok
}

func (f *fileTable) put(k fileKey, s fileState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if old, ok := f.byKey[k]; ok && old.path != s.path {
		if f.byPath[old.path] == k {
			delete(f.byPath, old.path)
		}
	}
	f.byKey[k] = s
	f.byPath[s.path] = k
}

func (f *fileTable) removePath(p string) (fileState, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k, ok := f.byPath[p]
	if !ok {
		return fileState{}, false
	}
	delete(f.byPath, p)
	s := f.byKey[k]
	if s.path == p {
		delete(f.byKey, k)
	}
	return s, true
}

// move renames a file, or for a directory every path under it; it returns
// the old and new paths with their states.
func (f *fileTable) move(from, to string, isDir bool) (moved [][2]string, states []fileState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !isDir {
		k, ok := f.byPath[from]
		if !ok {
			return nil, nil
		}
		delete(f.byPath, from)
		f.byPath[to] = k
		s := f.byKey[k]
		s.path = to
		f.byKey[k] = s
		return [][2]string{{from, to}}, []fileState{s}
	}
	for p, k := range f.byPath {
		if vault.Under(p, from) {
			np := to + p[len(from):]
			delete(f.byPath, p)
			f.byPath[np] = k
			s := f.byKey[k]
			s.path = np
			f.byKey[k] = s
			moved = append(moved, [2]string{p, np})
			states = append(states, s)
		}
	}
	return moved, states
}

// removePrefix forgets every path under dir (the directory was deleted or left the tree).
func (f *fileTable) removePrefix(dir string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for p, k := range f.byPath {
		if vault.Under(p, dir) {
			delete(f.byPath, p)
			delete(f.byKey, k)
			out = append(out, p)
		}
	}
	return out
}

// waker interrupts the loop's poll.
type waker struct{ r, w *os.File }

func newWaker() (*waker, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	return &waker{r, w}, nil
}

func (w *waker) Wake()   { w.w.Write([]byte{1}) }
func (w *waker) fd() int { return int(w.r.Fd()) }
func (w *waker) Close()  { w.r.Close(); w.w.Close() }

func fstat(fd int) (*unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

func isRegular(st *unix.Stat_t) bool { return st.Mode&syscall.S_IFMT == syscall.S_IFREG }
