package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

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

// TestGuardConfigFile: a file's keys are the guard's flag names; the
// command line wins; mistakes name their line and exit 2; check config
// says what the guard would do.
func TestGuardConfigFile(t *testing.T) {
	dir := t.TempDir()
	wards, pharmacy := filepath.Join(dir, "wards"), filepath.Join(dir, "pharmacy")
	os.Mkdir(wards, 0o755)
	os.Mkdir(pharmacy, 0o755)
	file := filepath.Join(dir, "guard.yaml")
	os.WriteFile(file, []byte("protect: ["+wards+", "+pharmacy+"]\nvault: "+filepath.Join(dir, "vault")+
		"\nhub-interval: 30s\nfile-servers: [smbd, ksmbd]\nblock-exec: false\n"), 0o644)

	fs, o := newGuardFlags(io.Discard)
	if err := o.parse(fs, []string{"--config", file, "--hub-interval", "5s"}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.roots, []string{wards, pharmacy}) || *o.hub.interval != 5*time.Second || *o.fileServers != "smbd,ksmbd" || *o.blockExec {
		t.Errorf("from the file: roots %v, interval %v (the command line's 5s wins), servers %q, block-exec %v", o.roots, *o.hub.interval, *o.fileServers, *o.blockExec)
	}
	fs, o = newGuardFlags(io.Discard)
	if err := o.parse(fs, []string{"--config", file, wards}); err != nil || !slices.Equal(o.roots, []string{wards}) {
		t.Errorf("folders on the command line replace the file's: %v %v", o.roots, err)
	}

	// The example shipped for systemd reads.
	fs, o = newGuardFlags(io.Discard)
	if err := o.parse(fs, []string{"--config", "../../contrib/guard.yaml"}); err != nil || !slices.Equal(o.roots, []string{"/srv/share"}) {
		t.Errorf("contrib/guard.yaml: %v %v", o.roots, err)
	}

	var out bytes.Buffer
	if err := run(context.Background(), []string{"check", "config", file}, &out, io.Discard); err != nil || !strings.Contains(out.String(), "OK") || !strings.Contains(out.String(), pharmacy) {
		t.Errorf("check config: %v\n%s", err, out.String())
	}
	for _, tc := range []struct{ doc, want string }{
		{"protect: " + wards + "\nhub-intervall: 3s\n", `:2: unknown key "hub-intervall"`},
		{"protect: " + wards + "\nhub-interval: soon\n", `:2: hub-interval: "soon"`},
		{"protect: " + wards + "\nconfig: /etc/other.yaml\n", `unknown key "config"`},
		{"protect: " + wards + "\nvault: " + filepath.Join(wards, "v") + "\n", "must be outside"},
		{"protect: " + wards + "\nhub: http://hub:8443\n", "want https://HOST:PORT"},
		{"vault: /v\n", "at least one folder"},
	} {
		bad := filepath.Join(dir, "bad.yaml")
		os.WriteFile(bad, []byte(tc.doc), 0o644)
		err := run(context.Background(), []string{"check", "config", bad}, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) || exitCode(err, io.Discard) != exitUsage {
			t.Errorf("check config of %q: %v (exit %d), want exit 2 and %q", tc.doc, err, exitCode(err, io.Discard), tc.want)
		}
	}
}

// TestHubConfigFile: the hub and its token and user subcommands read one
// file (the database's password stays out of ps); check config --hub
// validates it and never prints the password.
func TestHubConfigFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "hub.yaml")
	os.WriteFile(file, []byte("data: "+filepath.Join(dir, "hub")+"\nlisten: 127.0.0.1:0\nwebhook: https://hooks.example/x\n"), 0o600)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"hub", "token", "--config", file}, &out, io.Discard); err != nil || !strings.HasPrefix(out.String(), "ks1.") {
		t.Fatalf("hub token --config: %v %q", err, out.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "hub", "hub.db")); err != nil {
		t.Errorf("the token went elsewhere than the file's data folder: %v", err)
	}
	pg := filepath.Join(dir, "pg.yaml")
	os.WriteFile(pg, []byte("db: postgres://killswitch:s3cret@127.0.0.1:5432/ks\n"), 0o600)
	out.Reset()
	if err := run(context.Background(), []string{"check", "config", "--hub", pg}, &out, io.Discard); err != nil || strings.Contains(out.String(), "s3cret") || !strings.Contains(out.String(), "OK") {
		t.Errorf("check config --hub: %v\n%s", err, out.String())
	}
	for _, doc := range []string{"listen: nowhere\n", "db: mysql://x@y/z\n", "webhook: ftp://x\n", "role: responder\n"} {
		bad := filepath.Join(dir, "bad.yaml")
		os.WriteFile(bad, []byte(doc), 0o600)
		if err := run(context.Background(), []string{"check", "config", "--hub", bad}, io.Discard, io.Discard); exitCode(err, io.Discard) != exitUsage {
			t.Errorf("check config --hub of %q: %v", doc, err)
		}
	}
}
