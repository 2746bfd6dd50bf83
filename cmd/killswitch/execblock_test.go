package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/killswitch-dev/killswitch/internal/execblock"
)

// TestExecblockCommands: block and unblock edit the host's list without a
// hub; bad hashes are usage errors; killswitch's own hash is refused.
func TestExecblockCommands(t *testing.T) {
	state := filepath.Join(t.TempDir(), "sub", "blocklist.json")
	sample := strings.Repeat("ed01ebfbc9eb5bbea545af4d01bf5f10", 2)
	do := func(args ...string) (string, error) {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), append([]string{"execblock"}, append(args, "--state", state)...), &stdout, &stderr)
		return stdout.String(), err
	}
	for _, args := range [][]string{{"block"}, {"block", "zz"}, {"unblock", sample + "0"}, {"list", "extra"}, {"frobnicate"}} {
		if _, err := do(args...); !errors.Is(err, errUsage) {
			t.Errorf("execblock %v: %v, want a usage error", args, err)
		}
	}
	self, _ := os.Executable()
	sum, err := execblock.HashFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := do("block", sum.String()); !errors.Is(err, execblock.ErrEssential) {
		t.Errorf("blocking killswitch itself: %v", err)
	}
	if out, err := do("block", sample, "--note", "WannaCry"); err != nil || !strings.HasPrefix(out, "1 blocked") {
		t.Fatalf("block: %q %v", out, err)
	}
	if out, _ := do("block", strings.ToUpper(sample)); !strings.HasPrefix(out, "0 blocked (1 already so)") {
		t.Errorf("block again: %q", out)
	}
	if out, _ := do("list"); !strings.Contains(out, sample) || !strings.Contains(out, "WannaCry") {
		t.Errorf("list: %q", out)
	}
	if _, err := do("block", sample[:63]+"f", "--note", "bad\x07note"); err == nil {
		t.Error("a note with a control character was written")
	}
	if out, err := do("unblock", sample); err != nil || !strings.HasPrefix(out, "1 unblocked") {
		t.Fatalf("unblock: %q %v", out, err)
	}
	if out, _ := do("list"); !strings.Contains(out, "no binary is blocked") {
		t.Errorf("list after unblock: %q", out)
	}
}
