package testenv

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/killswitch-dev/killswitch/internal/netns"
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
	ns, err := netns.New("ks-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	for _, b := range nets {
		if _, _, err := netns.Link(nil, ns, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, b, 0, 0}), 24)); err != nil {
			t.Fatal(err)
		}
	}
	return ns.Name
}
