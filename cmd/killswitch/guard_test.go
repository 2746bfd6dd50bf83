package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/killswitch-dev/killswitch/internal/guard"
)

// TestGuardRefusesBadFoldersBeforeEnrolling: a folder that holds
// killswitch itself is refused before the one-time token is spent (the
// hub address here would fail with a connection error if it were tried).
func TestGuardRefusesBadFoldersBeforeEnrolling(t *testing.T) {
	self, _ := os.Executable()
	self, _ = filepath.EvalSymlinks(self)
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"guard", "--vault", filepath.Join(t.TempDir(), "vault"),
		"--hub", "https://127.0.0.1:1", "--token", "one-time", "--blocklist", filepath.Join(t.TempDir(), "bl.json"),
		filepath.Dir(self)}, &stdout, &stderr)
	if !errors.Is(err, guard.ErrConfig) || !strings.Contains(err.Error(), "holds "+self) {
		t.Fatalf("guard on the folder holding killswitch: %v", err)
	}
}

func TestCutoffUsage(t *testing.T) {
	for _, args := range [][]string{{"cutoff"}, {"cutoff", "frobnicate"}, {"cutoff", "release"}, {"cutoff", "release", "10.0.0.300"}, {"cutoff", "list", "extra"}} {
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), args, &stdout, &stderr); !errors.Is(err, errUsage) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}
