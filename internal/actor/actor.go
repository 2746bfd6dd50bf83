package actor

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ID names one process for its whole life: PID plus start time (clock
// ticks since boot), which together never repeat.
type ID struct {
	PID   int
	Start uint64
}

func (id ID) String() string { return fmt.Sprintf("%d@%d", id.PID, id.Start) }

// Info is what /proc says about one process.
type Info struct {
	ID
	PPID       int
	PGID, SID  int
	UID        int
	Comm       string
	Executable string
	Cmdline    []string
	Cgroup     string
}

// ErrGone is returned when the process exited before it could be read.
var ErrGone = errors.New("process gone")

// Read reads one process from procfs (normally "/proc").
func Read(proc string, pid int) (Info, error) {
	dir := proc + "/" + strconv.Itoa(pid)
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return Info{}, fmt.Errorf("pid %d: %w", pid, ErrGone)
	}
	info, err := parseStat(stat)
	if err != nil {
		return Info{}, fmt.Errorf("pid %d: %w", pid, err)
	}
	info.PID = pid
	info.Executable, _ = os.Readlink(dir + "/exe")
	if cmd, err := os.ReadFile(dir + "/cmdline"); err == nil {
		cmd = bytes.TrimRight(cmd, "\x00")
		if len(cmd) > 0 {
			info.Cmdline = strings.Split(string(cmd), "\x00")
		}
	}
	if st, err := os.ReadFile(dir + "/status"); err == nil {
		info.UID = parseUID(st)
	}
	if cg, err := os.ReadFile(dir + "/cgroup"); err == nil {
		info.Cgroup = strings.TrimSpace(string(cg))
		if i := strings.LastIndex(info.Cgroup, "::"); i >= 0 {
			info.Cgroup = info.Cgroup[i+2:]
		}
	}
	return info, nil
}

// StartTime reads only the start time of pid (cheap identity check).
func StartTime(proc string, pid int) (uint64, error) {
	stat, err := os.ReadFile(proc + "/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("pid %d: %w", pid, ErrGone)
	}
	info, err := parseStat(stat)
	return info.Start, err
}

// parseStat parses /proc/PID/stat. The comm field may hold spaces and
// parentheses, so the fields are found from the last ')'.
func parseStat(b []byte) (Info, error) {
	open := bytes.IndexByte(b, '(')
	close := bytes.LastIndexByte(b, ')')
	if open < 0 || close < open {
		return Info{}, fmt.Errorf("malformed stat")
	}
	var info Info
	info.Comm = string(b[open+1 : close])
	f := strings.Fields(string(b[close+1:]))
	// After comm: state(0) ppid(1) pgrp(2) session(3) ... starttime(19)
	if len(f) < 20 {
		return Info{}, fmt.Errorf("malformed stat: %d fields", len(f))
	}
	var err error
	num := func(s string) int {
		n, e := strconv.Atoi(s)
		if e != nil && err == nil {
			err = e
		}
		return n
	}
	info.PPID, info.PGID, info.SID = num(f[1]), num(f[2]), num(f[3])
	info.Start, _ = strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return Info{}, fmt.Errorf("malformed stat: %w", err)
	}
	return info, nil
}

func parseUID(status []byte) int {
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				n, _ := strconv.Atoi(f[0])
				return n
			}
		}
	}
	return -1
}

// Cache memoizes Info by PID, revalidated by start time so a reused PID
// gets a fresh entry. An entry checked less than Fresh ago is trusted
// without reading /proc: the guard asks about the same few processes
// thousands of times a second, and a PID is not reused that fast in
// practice (the kernel hands PIDs out in increasing order and wraps at
// pid_max). Safe for concurrent use.
type Cache struct {
	proc  string
	Fresh time.Duration
	mu    sync.Mutex
	m     map[int]entry
}

type entry struct {
	info    Info
	checked time.Time
}

// NewCache reads from proc (normally "/proc").
func NewCache(proc string) *Cache {
	return &Cache{proc: proc, Fresh: 100 * time.Millisecond, m: make(map[int]entry)}
}

// maxEntries bounds memory on hosts that churn through many PIDs.
const maxEntries = 1 << 16

// Get returns the process's Info.
func (c *Cache) Get(pid int) (Info, error) {
	now := time.Now()
	c.mu.Lock()
	e, ok := c.m[pid]
	c.mu.Unlock()
	if ok && now.Sub(e.checked) < c.Fresh {
		return e.info, nil
	}
	start, err := StartTime(c.proc, pid)
	if err != nil {
		// The process is gone: what we knew of it is still the best answer.
		if ok {
			return e.info, nil
		}
		return Info{}, err
	}
	if ok && e.info.Start == start {
		c.mu.Lock()
		c.m[pid] = entry{e.info, now}
		c.mu.Unlock()
		return e.info, nil
	}
	info, err := Read(c.proc, pid)
	if err != nil {
		return Info{}, err
	}
	c.mu.Lock()
	if len(c.m) >= maxEntries {
		clear(c.m)
	}
	c.m[pid] = entry{info, now}
	c.mu.Unlock()
	return info, nil
}

// Lineage returns the process and its ancestors, nearest first, stopping
// before PID 1 (init is never part of an attack's lineage).
func (c *Cache) Lineage(pid int) []Info {
	var out []Info
	for i := 0; pid > 1 && i < 64; i++ {
		info, err := c.Get(pid)
		if err != nil {
			break
		}
		out = append(out, info)
		pid = info.PPID
	}
	return out
}

// Descendants lists every live process whose parent chain reaches root,
// root included, read fresh from proc.
func Descendants(proc string, root int) ([]int, error) {
	ents, err := os.ReadDir(proc)
	if err != nil {
		return nil, err
	}
	children := map[int][]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(proc + "/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		info, err := parseStat(b)
		if err != nil {
			continue
		}
		children[info.PPID] = append(children[info.PPID], pid)
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out, nil
}
