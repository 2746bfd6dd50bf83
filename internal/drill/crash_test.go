package drill

import (
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/killswitch-dev/killswitch/internal/simulate"
	"github.com/killswitch-dev/killswitch/internal/testenv"
)

// startGuard runs `killswitch guard` and waits for READY=1 on NOTIFY_SOCKET.
func startGuard(t *testing.T, exe, vaultDir, dir string) *exec.Cmd {
	t.Helper()
	sockPath := filepath.Join(t.TempDir(), "notify.sock")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	cmd := exec.Command(exe, "guard", "--vault", vaultDir, "--alerts", filepath.Join(vaultDir, "..", "alerts.jsonl"), dir)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sockPath)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sock.SetReadDeadline(time.Now().Add(60 * time.Second))
	buf := make([]byte, 64)
	n, err := sock.Read(buf)
	if err != nil || string(buf[:n]) != "READY=1" {
		cmd.Process.Kill()
		t.Fatalf("no READY=1 from the guard: %q %v", buf[:n], err)
	}
	return cmd
}

// TestGuardKilledMidAttackLosesNothing SIGKILLs the guard at a random
// moment during an attack, restarts it, and restores: nothing may be lost
// and the vault must check clean.
func TestGuardKilledMidAttackLosesNothing(t *testing.T) {
	testenv.RequireRoot(t)
	exe := testenv.BuildKillswitch(t)
	profiles := []string{"inplace", "wannacry", "rename-over", "copy-delete", "intermittent"}
	for run := 0; run < 20; run++ {
		base := t.TempDir()
		corpus, vdir := filepath.Join(base, "corpus"), filepath.Join(base, "vault")
		m, err := simulate.MakeCorpus(corpus, 40, uint64(run))
		if err != nil {
			t.Fatal(err)
		}
		g := startGuard(t, exe, vdir, corpus)
		armed := time.Now().UTC()
		sim := exec.Command(exe, "simulate", profiles[run%len(profiles)], corpus)
		if err := sim.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rand.IntN(4000)) * time.Microsecond)
		g.Process.Signal(syscall.SIGKILL)
		g.Wait()
		sim.Wait() // finished, or stopped by the guard before it died
		g = startGuard(t, exe, vdir, corpus)
		out, err := exec.Command(exe, "restore", "--vault", vdir, "--before", armed.Format(time.RFC3339Nano), corpus).CombinedOutput()
		if err != nil {
			t.Fatalf("run %d: restore: %v\n%s", run, err, out)
		}
		if lost := simulate.Damage(corpus, m); len(lost) != 0 {
			t.Fatalf("run %d (%s): %d files lost: %v\n%s", run, profiles[run%len(profiles)], len(lost), lost, out)
		}
		g.Process.Signal(syscall.SIGTERM)
		if err := g.Wait(); err != nil {
			t.Fatalf("guard did not exit 0 on SIGTERM: %v", err)
		}
		if out, err := exec.Command(exe, "vault", "check", "--vault", vdir).CombinedOutput(); err != nil {
			t.Fatalf("run %d: vault check: %v\n%s", run, err, out)
		}
	}
}
