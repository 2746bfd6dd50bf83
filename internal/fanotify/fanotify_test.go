package fanotify

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/killswitch-dev/killswitch/internal/testenv"
)

func newGroup(t *testing.T, class Class, dir string, mask uint64) *Group {
	t.Helper()
	testenv.RequireRoot(t)
	if err := Probe(dir); err != nil {
		if errors.Is(err, ErrNotSupported) {
			testenv.Skip(t, err.Error())
		}
		t.Fatal(err)
	}
	g, err := New(class)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	if err := g.MarkDir(dir, mask); err != nil {
		t.Fatal(err)
	}
	return g
}

// answer reads events until pred matches one, answering every permission
// event with allow (or deny for the matching one when deny is set).
func answer(t *testing.T, g *Group, deny bool, pred func(Event) bool) Event {
	t.Helper()
	buf := make([]byte, 64<<10)
	var evs []Event
	for {
		var err error
		evs, err = g.Read(buf, evs)
		if err != nil {
			t.Fatal(err)
		}
		for i := range evs {
			ev := evs[i]
			match := pred(ev)
			if ev.Mask&(OpenPerm|OpenExecPerm) != 0 {
				if err := g.Respond(int(ev.Fd), !(match && deny)); err != nil {
					t.Fatal(err)
				}
			}
			ev.CloseFD()
			if match {
				return ev
			}
		}
	}
}

func TestOpenPermIsAnsweredAndIgnoreClearsOnModify(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.txt")
	if err := os.WriteFile(p, []byte("before"), 0o644); err != nil {
		t.Fatal(err)
	}
	g := newGroup(t, Permission, dir, PermMask)

	// A denied open fails with EPERM in the opener.
	done := make(chan error, 1)
	go func() { _, err := os.ReadFile(p); done <- err }()
	ev := answer(t, g, true, func(e Event) bool { return e.Mask&OpenPerm != 0 })
	if ev.Pid != int32(os.Getpid()) {
		t.Errorf("pid = %d, want %d", ev.Pid, os.Getpid())
	}
	if err := <-done; !errors.Is(err, syscall.EPERM) {
		t.Fatalf("denied open returned %v, want EPERM", err)
	}

	// Allowed, then ignored until modified: a second read produces no
	// permission event, a write clears the ignore mark.
	go func() { _, err := os.ReadFile(p); done <- err }()
	var ignoreSet bool
	answer(t, g, false, func(e Event) bool {
		if e.Mask&OpenPerm != 0 && !ignoreSet {
			if err := g.IgnoreUntilModified(int(e.Fd), OpenPerm); err != nil {
				t.Fatal(err)
			}
			ignoreSet = true
			return true
		}
		return false
	})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.ReadFile(p); err != nil { // would hang if not ignored: nobody answers
		t.Fatal(err)
	}
	go func() {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		if err == nil {
			_, err = f.WriteString("more")
			f.Close()
		}
		if err == nil {
			_, err = os.ReadFile(p)
		}
		done <- err
	}()
	// The append open is still ignored; the write clears the mark, so the
	// read after it must ask again, and the close-write is reported too.
	var sawClose, sawOpenAfter bool
	answer(t, g, false, func(e Event) bool {
		if e.Mask&CloseWrite != 0 {
			sawClose = true
		}
		if e.Mask&OpenPerm != 0 && sawClose {
			sawOpenAfter = true
		}
		return sawOpenAfter
	})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestDirentEventsCarryNames(t *testing.T) {
	dir := t.TempDir()
	g := newGroup(t, Dirent, dir, DirentMask)
	key, err := DirKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, b := filepath.Join(dir, "a.txt"), filepath.Join(dir, "b.WNCRY")
	if err := os.WriteFile(a, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(a, b); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(b); err != nil {
		t.Fatal(err)
	}
	var got []string
	answer(t, g, false, func(e Event) bool {
		if e.Dir != key {
			t.Errorf("event dir key does not match DirKey(%s)", dir)
		}
		switch {
		case e.Mask&Create != 0:
			got = append(got, "create "+e.Name)
		case e.Mask&Rename != 0:
			if e.NewDir != key {
				t.Errorf("rename new dir key mismatch")
			}
			got = append(got, "rename "+e.Name+" "+e.NewName)
		case e.Mask&Delete != 0:
			got = append(got, "delete "+e.Name)
		}
		return len(got) == 3
	})
	want := "create a.txt|rename a.txt b.WNCRY|delete b.WNCRY"
	if s := strings.Join(got, "|"); s != want {
		t.Fatalf("events = %q, want %q", s, want)
	}
}

// TestWriterNotBlockedWhenListenerDies: a listener that is SIGKILLed while a
// writer waits on its permission event must not leave the writer blocked.
func TestWriterNotBlockedWhenListenerDies(t *testing.T) {
	testenv.RequireRoot(t)
	if os.Getenv("KILLSWITCH_FANOTIFY_HELPER") != "" {
		listenAndNeverAnswer(os.Getenv("KILLSWITCH_FANOTIFY_HELPER"))
		return
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	helper := exec.Command(os.Args[0], "-test.run=^TestWriterNotBlockedWhenListenerDies$")
	helper.Env = append(os.Environ(), "KILLSWITCH_FANOTIFY_HELPER="+dir)
	out, _ := helper.StdoutPipe()
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make([]byte, 6)
	if _, err := out.Read(ready); err != nil || string(ready) != "marked" {
		t.Fatalf("helper did not mark: %q %v", ready, err)
	}
	// The writer runs in another process so that the test can observe it block.
	writer := exec.Command("sh", "-c", "echo changed > "+filepath.Join(dir, "f"))
	if err := writer.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- writer.Wait() }()
	// Wait until the writer is really parked on the permission event.
	for !blockedOnFanotify(writer.Process.Pid) {
		select {
		case err := <-waited:
			t.Fatalf("writer finished before the listener died (%v): the listener did not hold it", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	helper.Process.Signal(syscall.SIGKILL)
	helper.Wait()
	if err := <-waited; err != nil {
		t.Fatalf("writer after listener death: %v", err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "f"))
	if string(b) != "changed\n" {
		t.Fatalf("file = %q", b)
	}
}

func blockedOnFanotify(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/wchan")
	return err == nil && strings.Contains(string(b), "fanotify")
}

func listenAndNeverAnswer(dir string) {
	g, err := New(Permission)
	if err != nil {
		os.Exit(3)
	}
	if err := g.MarkDir(dir, PermMask); err != nil {
		os.Exit(4)
	}
	os.Stdout.WriteString("marked")
	time.Sleep(time.Hour) // hold every permission event until killed
}

func TestStopIgnoringKeepsDirectoryMark(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.txt")
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	g := newGroup(t, Permission, dir, PermMask)
	done := make(chan error, 1)
	go func() { _, err := os.ReadFile(p); done <- err }()
	answer(t, g, false, func(e Event) bool {
		if e.Mask&OpenPerm != 0 {
			if err := g.IgnoreUntilModified(int(e.Fd), OpenPerm); err != nil {
				t.Fatal(err)
			}
			return true
		}
		return false
	})
	<-done
	if err := g.StopIgnoring(p, OpenPerm); err != nil {
		t.Fatal(err)
	}
	// The next open asks again: the directory mark is still there.
	go func() { _, err := os.ReadFile(p); done <- err }()
	answer(t, g, false, func(e Event) bool { return e.Mask&OpenPerm != 0 })
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := g.StopIgnoring(filepath.Join(dir, "missing"), OpenPerm); err != nil {
		t.Fatalf("removing the ignore mark of a missing file: %v", err)
	}
}

// TestQueueOverflowIsReported: when nobody reads, the kernel's bounded
// queue fills and a QueueOverflow event stands for what was dropped.
func TestQueueOverflowIsReported(t *testing.T) {
	dir := t.TempDir()
	g := newGroup(t, Dirent, dir, DirentMask)
	limit := 16384
	if b, err := os.ReadFile("/proc/sys/fs/fanotify/max_queued_events"); err == nil {
		limit, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	for i := 0; i < limit+100; i++ { // a create and a delete each
		p := filepath.Join(dir, "f"+strconv.Itoa(i))
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		os.Remove(p)
	}
	buf := make([]byte, 1<<20)
	var evs []Event
	total := 0
	for {
		var err error
		evs, err = g.TryRead(buf, evs)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			t.Fatalf("read %d events and no overflow (queue limit %d)", total, limit)
		}
		total += len(evs)
		for _, e := range evs {
			if e.Mask&QueueOverflow != 0 {
				return
			}
		}
	}
}
