package execblock

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/killswitch-dev/killswitch/internal/testenv"
)

// lab mounts a tmpfs of its own and watches only that: a test must never
// hold every execution on the machine hostage.
func lab(t testing.TB, cfg Config) (string, *Process, *denialLog) {
	t.Helper()
	dir := tmpfs(t)
	cfg.Mounts = []string{dir}
	b, denied, stop := start(t, cfg)
	t.Cleanup(stop)
	return dir, b, denied
}

func tmpfs(t testing.TB) string {
	t.Helper()
	testenv.RequireRoot(t)
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=256m"); err != nil {
		testenv.Skip(t, "cannot mount a tmpfs: "+err.Error())
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// start runs a blocker process (this test binary again, see TestMain)
// until stop is called: the process answering executions must not be the
// one starting them.
func start(t testing.TB, cfg Config) (*Process, *denialLog, func()) {
	t.Helper()
	denied := &denialLog{}
	conf, _ := json.Marshal(childConfig{State: cfg.State, Mounts: cfg.Mounts, Deadline: cfg.Deadline})
	ctx, cancel := context.WithCancel(context.Background())
	p, err := Start(ctx, []string{os.Args[0]}, []string{"EXECBLOCK_TEST_CHILD=" + string(conf)},
		func(d Denial) { denied.mu.Lock(); denied.got = append(denied.got, d); denied.mu.Unlock() }, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Wait until it answers: it has opened its group and placed its marks.
	if _, _, err := p.Stats(ctx); err != nil {
		t.Fatal(err)
	}
	return p, denied, func() {
		cancel()
		p.Wait()
	}
}

type denialLog struct {
	mu  sync.Mutex
	got []Denial
}

func (l *denialLog) first() (Denial, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.got) == 0 {
		return Denial{}, false
	}
	return l.got[0], true
}

type childConfig struct {
	State    string
	Mounts   []string
	Deadline time.Duration
}

func TestMain(m *testing.M) {
	if conf := os.Getenv("EXECBLOCK_TEST_CHILD"); conf != "" {
		var c childConfig
		if err := json.Unmarshal([]byte(conf), &c); err != nil {
			panic(err)
		}
		err := Serve(context.Background(), Config{State: c.State, Mounts: c.Mounts, Deadline: c.Deadline}, os.Stdin, os.Stdout)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// install copies a system program into dir under name.
func install(t testing.TB, dir, name, from string, extra []byte) (string, Sum) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, extra...) // an ELF file runs the same with bytes after its end
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return p, sha256.Sum256(b)
}

var bg = context.Background()

func stats(t *testing.T, p *Process) Stats {
	t.Helper()
	st, _, err := p.Stats(bg)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// firstDenial waits for the first denial to come through the pipe.
func firstDenial(t *testing.T, denied *denialLog) Denial {
	t.Helper()
	for range 500 {
		if d, ok := denied.first(); ok {
			return d
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no denial reported")
	return Denial{}
}

func runs(path string) error { return exec.Command(path).Run() }

func isDenied(err error) bool {
	return errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES)
}

func TestBlockByHash(t *testing.T) {
	dir, b, denied := lab(t, Config{})
	evil, evilSum := install(t, dir, "wcry", "/bin/true", []byte("tasksche"))
	good, _ := install(t, dir, "backup-tool", "/bin/true", nil)
	if err := runs(evil); err != nil {
		t.Fatalf("before any block: %v", err)
	}
	if _, err := b.Block(bg, evilSum, "incident 42 on ward-3-pc"); err != nil {
		t.Fatal(err)
	}
	if err := runs(evil); !isDenied(err) {
		t.Fatalf("blocked binary ran: %v", err)
	}
	// The same bytes under another name, dropped again: still refused.
	copyPath := filepath.Join(dir, "sub", "svchost")
	os.MkdirAll(filepath.Dir(copyPath), 0o755)
	data, _ := os.ReadFile(evil)
	os.WriteFile(copyPath, data, 0o755)
	if err := runs(copyPath); !isDenied(err) {
		t.Fatalf("a renamed copy ran: %v", err)
	}
	// Another program runs, and its second run is not hashed again.
	if err := runs(good); err != nil {
		t.Fatalf("an unblocked program was refused: %v", err)
	}
	hashed := stats(t, b).Hashed
	for range 3 {
		if err := runs(good); err != nil {
			t.Fatal(err)
		}
	}
	if got := stats(t, b).Hashed; got != hashed {
		t.Errorf("an unchanged binary was hashed again: %d hashes, then %d", hashed, got)
	}
	// Modifying the clean binary into the blocked one clears its ignore mark.
	f, err := os.OpenFile(good, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("tasksche"))
	f.Close()
	if err := runs(good); !isDenied(err) {
		t.Fatalf("a binary modified into the blocked one ran: %v", err)
	}
	d := firstDenial(t, denied)
	if d.SHA256 != evilSum.String() || d.Path != evil || d.PID <= 0 || d.Note != "incident 42 on ward-3-pc" || d.Count != 1 {
		t.Errorf("first denial = %+v", d)
	}
	// Unblocking lets it run again.
	if ok, err := b.Unblock(bg, evilSum); !ok || err != nil {
		t.Fatalf("Unblock = %v, %v", ok, err)
	}
	if err := runs(evil); err != nil {
		t.Fatalf("after unblock: %v", err)
	}
	if l, err := b.List(bg); len(l) != 0 || err != nil {
		t.Errorf("list after unblock: %v, %v", l, err)
	}
}

// TestBlockAfterCleanVerdict: a binary already found clean (and so
// ignored by the kernel) is refused once it is blocked.
func TestBlockAfterCleanVerdict(t *testing.T) {
	dir, b, _ := lab(t, Config{})
	_, other := install(t, dir, "other", "/bin/false", nil)
	if _, err := b.Block(bg, other, ""); err != nil { // the list is not empty: marks are placed
		t.Fatal(err)
	}
	tool, sum := install(t, dir, "tool", "/bin/true", nil)
	for range 2 {
		if err := runs(tool); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Block(bg, sum, "later found bad"); err != nil {
		t.Fatal(err)
	}
	if err := runs(tool); !isDenied(err) {
		t.Fatalf("ran after it was blocked: %v", err)
	}
}

func TestEssentialBinariesRefused(t *testing.T) {
	_, b, _ := lab(t, Config{})
	self, _ := os.Executable()
	for _, p := range []string{self, "/bin/sh"} {
		sum, err := HashFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Block(bg, sum, ""); !errors.Is(err, ErrEssential) {
			t.Errorf("Block(%s) = %v, want ErrEssential", p, err)
		}
	}
	if l, err := b.List(bg); len(l) != 0 || err != nil {
		t.Errorf("list = %v, %v", l, err)
	}
}

// TestListSurvivesRestart: the list is enforced from Open, before any
// hub has been reached.
func TestListSurvivesRestart(t *testing.T) {
	state := filepath.Join(t.TempDir(), "blocklist.json")
	dir := tmpfs(t)
	b, _, stop := start(t, Config{State: state, Mounts: []string{dir}})
	evil, sum := install(t, dir, "wcry", "/bin/true", []byte("x"))
	if _, err := b.Block(bg, sum, "kept"); err != nil {
		t.Fatal(err)
	}
	stop()
	if err := runs(evil); err != nil {
		t.Fatalf("refused with no blocker running: %v", err)
	}
	b2, _, stop2 := start(t, Config{State: state, Mounts: []string{dir}})
	defer stop2()
	if l, _ := b2.List(bg); len(l) != 1 || l[0].SHA256 != sum.String() || l[0].Note != "kept" {
		t.Fatalf("reloaded list = %+v", l)
	}
	if err := runs(evil); !isDenied(err) {
		t.Fatalf("ran with the reloaded list: %v", err)
	}
	// A corrupt state file is an error, not an empty list.
	os.WriteFile(state, []byte(`{"version":1,"blocked":[{"sha256":"zz"}]}`), 0o600)
	if _, err := Open(Config{State: state, Mounts: []string{dir}}); err == nil {
		t.Fatal("a corrupt state file was accepted")
	}
}

// TestKilledBlockerIsRestarted: SIGKILL lets every held execution through
// (the kernel answers for a dead listener); the parent starts the blocker
// again, and the saved list holds again.
func TestKilledBlockerIsRestarted(t *testing.T) {
	state := filepath.Join(t.TempDir(), "blocklist.json")
	dir, b, _ := lab(t, Config{State: state})
	evil, sum := install(t, dir, "wcry", "/bin/true", []byte("y"))
	if _, err := b.Block(bg, sum, ""); err != nil {
		t.Fatal(err)
	}
	first := b.pid()
	syscall.Kill(first, syscall.SIGKILL)
	for i := 0; b.pid() == first; i++ {
		if i > 1000 {
			t.Fatal("the blocker was not restarted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, _, err := b.Stats(bg); err != nil {
		t.Fatal(err)
	}
	if err := runs(evil); !isDenied(err) {
		t.Fatalf("ran after the blocker was restarted: %v", err)
	}
}

// TestLateVerdictAllows: an execution never waits past the deadline; a
// binary too large to hash in time runs (and is counted as late).
func TestLateVerdictAllows(t *testing.T) {
	dir, b, _ := lab(t, Config{Deadline: 1})
	_, other := install(t, dir, "other", "/bin/false", nil)
	b.Block(bg, other, "")
	big, _ := install(t, dir, "big", "/bin/true", bytes.Repeat([]byte{0}, 64<<20))
	if err := runs(big); err != nil {
		t.Fatalf("a late verdict refused the execution: %v", err)
	}
	if stats(t, b).Late == 0 {
		t.Error("no late verdict counted")
	}
}

func TestParseMountinfo(t *testing.T) {
	in := []byte(`22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
23 22 0:21 / /proc rw,nosuid - proc proc rw
24 22 8:1 /srv /mnt/with\040space rw - ext4 /dev/sda1 rw
25 22 0:30 / /run/user/0 rw - tmpfs tmpfs rw
garbage line
26 22 0:44 / /mnt/nfs rw - nfs4 srv:/x rw
`)
	ms := parseMountinfo(in)
	if len(ms) != 5 || ms[2].point != "/mnt/with space" || ms[1].fstype != "proc" {
		t.Fatalf("parsed %+v", ms)
	}
	p := filepath.Join(t.TempDir(), "mountinfo")
	os.WriteFile(p, in, 0o600)
	got, err := localMounts(p)
	if err != nil {
		t.Fatal(err)
	}
	// One mount per filesystem (the bind mount of sda1 is the same one),
	// neither proc nor a network filesystem.
	if len(got) != 2 || got[0] != "/" || got[1] != "/run/user/0" {
		t.Errorf("localMounts = %q", got)
	}
}

func TestParseSum(t *testing.T) {
	want := sha256.Sum256([]byte("x"))
	for _, s := range []string{Sum(want).String(), string(bytes.ToUpper([]byte(Sum(want).String())))} {
		if got, err := ParseSum(s); err != nil || got != Sum(want) {
			t.Errorf("ParseSum(%s) = %v, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "abc", Sum(want).String() + "00", "g" + Sum(want).String()[1:]} {
		if _, err := ParseSum(s); err == nil {
			t.Errorf("ParseSum(%q) accepted", s)
		}
	}
}

func FuzzParseState(f *testing.F) {
	f.Add([]byte(`{"version":1,"blocked":[{"sha256":"` + Sum(sha256.Sum256(nil)).String() + `","note":"n","added":"2026-11-26T00:00:00Z"}]}`))
	f.Add([]byte(`{"version":1,"blocked":null}`))
	f.Add([]byte(`{"version":2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := ParseState(b)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, e := range entries {
			if _, err := ParseSum(e.SHA256); err != nil || seen[e.SHA256] || checkNote(e.Note) != nil {
				t.Fatalf("accepted a bad entry %+v", e)
			}
			seen[e.SHA256] = true
		}
	})
}

func FuzzParseMountinfo(f *testing.F) {
	f.Add([]byte("22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"))
	f.Add([]byte("24 22 8:1 /srv /mnt/a\\040b\\1 rw - ext4 /dev/sda1 rw\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, m := range parseMountinfo(b) {
			if m.fstype == "" || m.dev == "" {
				t.Fatalf("empty field in %+v", m)
			}
		}
	})
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"id":1,"op":"block","sha256":"` + Sum(sha256.Sum256(nil)).String() + `","note":"incident 7"}`))
	f.Add([]byte(`{"id":2,"op":"list"}`))
	f.Add([]byte(`{"id":0,"op":"stats"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := DecodeRequest(line)
		if err != nil {
			return
		}
		if r.ID <= 0 || checkNote(r.Note) != nil {
			t.Fatalf("accepted %+v", r)
		}
		if r.Op == "block" || r.Op == "unblock" || r.Op == "running" {
			if _, err := ParseSum(r.SHA256); err != nil {
				t.Fatalf("accepted %+v", r)
			}
		}
	})
}

// TestEditedListIsTakenUp: `killswitch execblock block` edits the file; the
// running blocker applies it, and a note it could not read back is refused.
func TestEditedListIsTakenUp(t *testing.T) {
	state := filepath.Join(t.TempDir(), "blocklist.json")
	dir, _, _ := lab(t, Config{State: state})
	evil, sum := install(t, dir, "wcry", "/bin/true", []byte("z"))
	add := func(list []Entry) ([]Entry, error) {
		return append(list, Entry{SHA256: sum.String(), Note: "from the command line", Added: time.Now()}), nil
	}
	if err := EditState(state, add); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the edit to be applied", func() bool { return isDenied(runs(evil)) })
	if err := EditState(state, func([]Entry) ([]Entry, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the removal to be applied", func() bool { return runs(evil) == nil })
	bad := func(list []Entry) ([]Entry, error) {
		return append(list, Entry{SHA256: sum.String(), Note: "line\nbreak"}), nil
	}
	if err := EditState(state, bad); err == nil {
		t.Fatal("a note with a line break was written")
	}
	if _, err := loadState(state); err != nil {
		t.Fatalf("the state file is unreadable after a refused edit: %v", err)
	}
}
