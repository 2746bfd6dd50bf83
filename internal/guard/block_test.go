package guard

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/killswitch-dev/killswitch/internal/execblock"
	"github.com/killswitch-dev/killswitch/internal/testenv"
)

// TestAttackerBinaryIsBlocked: a shell script (run by its own copy of the
// shell, as a dropped ransomware binary would be) encrypts files with
// openssl, one process per file. The guard stops the script's process tree
// and then denies every further execution of that binary.
func TestAttackerBinaryIsBlocked(t *testing.T) {
	testenv.RequireTool(t, "openssl")
	testenv.RequireRoot(t)
	// The attacker's binary lies on a tmpfs of the test's own: only that
	// filesystem gets an execution mark.
	bins := t.TempDir()
	if err := unix.Mount("tmpfs", bins, "tmpfs", 0, "size=16m"); err != nil {
		testenv.Skip(t, "cannot mount a tmpfs: "+err.Error())
	}
	defer unix.Unmount(bins, unix.MNT_DETACH)
	exe := testenv.BuildKillswitch(t)
	ctx, cancel := context.WithCancel(context.Background())
	blocker, err := execblock.Start(ctx, []string{exe, "execblock", "serve", "--state", filepath.Join(t.TempDir(), "blocklist.json"), "--mounts", bins}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); blocker.Wait() }()
	dir, incidents, stop := armed(t, func(c *Config) { c.BlockExec, c.ExecBlocker = true, blocker })
	defer stop()
	for i := 0; i < 20; i++ {
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("record-%02d.txt", i)),
			[]byte(strings.Repeat(fmt.Sprintf("patient %d, ward 3, discharged\n", i), 200)), 0o644)
	}
	evil := filepath.Join(bins, "wcry")
	sh, _ := os.ReadFile("/bin/sh")
	if err := os.WriteFile(evil, sh, 0o755); err != nil {
		t.Fatal(err)
	}
	script := `for f in *.txt; do openssl enc -aes-256-cbc -pbkdf2 -pass pass:x -in "$f" -out "$f.tmp" && mv "$f.tmp" "$f"; done`
	cmd := exec.Command(evil, "-c", script)
	cmd.Dir = dir
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the attacker was not killed: %v", err)
	}
	select {
	case inc := <-incidents:
		t.Logf("incident %s: %v, actor %s", inc.ID, inc.Indicators, inc.Actor.Executable)
		if !inc.ExecBlocked {
			t.Error("incident does not say the binary was blocked")
		}
		if inc.Actor.Executable != evil {
			t.Errorf("stopped %s, want the script's shell %s", inc.Actor.Executable, evil)
		}
		// The hash the hub blocks fleet-wide is the binary's as it ran.
		if want := fmt.Sprintf("%x", sha256.Sum256(sh)); inc.ExeSHA256 != want {
			t.Errorf("incident exe_sha256 = %q, want %s", inc.ExeSHA256, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no incident")
	}
	err = exec.Command(evil, "-c", "true").Run()
	if !errors.Is(err, syscall.EPERM) && !errors.Is(err, syscall.EACCES) {
		t.Fatalf("running the blocked binary again: %v, want permission denied", err)
	}
	// Other programs still run.
	if err := exec.Command("sh", "-c", "true").Run(); err != nil {
		t.Fatalf("sh blocked too: %v", err)
	}
}
