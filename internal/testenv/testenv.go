package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Strict reports whether skips must become failures.
func Strict() bool { return os.Getenv("KILLSWITCH_TEST_STRICT") == "1" }

// Skip skips the test with why, or fails it in strict mode.
func Skip(t testing.TB, why string) {
	t.Helper()
	if Strict() {
		t.Fatalf("KILLSWITCH_TEST_STRICT=1 forbids skipping: %s", why)
	}
	t.Skip(why)
}

// RequireRoot skips (or fails in strict mode) unless running as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "needs root (fanotify permission events, signals to other processes)")
	}
}

// RequireTool skips (or fails in strict mode) unless name is on PATH.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Skip(t, name+" is not installed")
	}
	return p
}

// BuildKillswitch builds the real binary, for tests that run it as its own
// process exactly as in production.
func BuildKillswitch(t testing.TB) string {
	t.Helper()
	exe := filepath.Join(t.TempDir(), "killswitch")
	out, err := exec.Command("go", "build", "-o", exe, "github.com/killswitch-dev/killswitch/cmd/killswitch").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return exe
}

// WaitFor polls cond until it holds, failing the test after 30 s: for
// something another process or goroutine does (never to measure speed).
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Netns makes a network namespace joined to this one by one veth pair per
// net b: 10.b.0.1/24 on this side, 10.b.0.2/24 inside. Both are removed
// when the test ends. Tests reach only what they made here.
func Netns(t testing.TB, nets ...byte) string {
	t.Helper()
	RequireRoot(t)
	RequireTool(t, "ip")
	ns := fmt.Sprintf("ks-%05d", time.Now().UnixNano()%100000)
	cmds := [][]string{{"ip", "netns", "add", ns}, {"ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"}}
	var links []string
	for i, b := range nets {
		out, in := fmt.Sprintf("%sa%d", ns, i), fmt.Sprintf("%sb%d", ns, i)
		links = append(links, out)
		cmds = append(cmds,
			[]string{"ip", "link", "add", out, "type", "veth", "peer", "name", in},
			[]string{"ip", "link", "set", in, "netns", ns},
			[]string{"ip", "addr", "add", fmt.Sprintf("10.%d.0.1/24", b), "dev", out},
			[]string{"ip", "link", "set", out, "up"},
			[]string{"ip", "netns", "exec", ns, "ip", "addr", "add", fmt.Sprintf("10.%d.0.2/24", b), "dev", in},
			[]string{"ip", "netns", "exec", ns, "ip", "link", "set", in, "up"})
	}
	t.Cleanup(func() {
		for _, l := range links {
			exec.Command("ip", "link", "del", l).Run()
		}
		exec.Command("ip", "netns", "del", ns).Run()
	})
	for _, c := range cmds {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", c, err, out)
		}
	}
	return ns
}
