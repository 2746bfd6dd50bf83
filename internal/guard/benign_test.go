package guard

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/killswitch-dev/killswitch/internal/alert"
	"github.com/killswitch-dev/killswitch/internal/testenv"
	"github.com/killswitch-dev/killswitch/internal/vault"
)

// armed runs a guard on a fresh folder and returns it with a channel of
// incidents; opts adjust its configuration.
func armed(t *testing.T, opts ...func(*Config)) (dir string, incidents chan vault.Incident, stop func() Stats) {
	t.Helper()
	_, dir, incidents, stop = armedGuard(t, opts...)
	return dir, incidents, stop
}

// armedGuard is armed, with the running guard.
func armedGuard(t *testing.T, opts ...func(*Config)) (g *Guard, dir string, incidents chan vault.Incident, stop func() Stats) {
	t.Helper()
	testenv.RequireRoot(t)
	base := t.TempDir()
	dir = filepath.Join(base, "protected")
	os.Mkdir(dir, 0o755)
	incidents = make(chan vault.Incident, 16)
	ready := make(chan struct{})
	cfg := Config{Roots: []string{dir}, VaultDir: filepath.Join(base, "vault"), Alerts: alert.NewWriter(io.Discard),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Ready: func() { close(ready) },
		OnIncident: func(i vault.Incident) { incidents <- i }}
	for _, o := range opts {
		o(&cfg)
	}
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("guard did not arm: %v", err)
	}
	return g, dir, incidents, func() Stats {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("guard: %v", err)
		}
		return g.Stats()
	}
}

func sh(t *testing.T, dir, script string) {
	t.Helper()
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
}

// TestBenignSuiteNeverStopped drives the real tools people use on a
// protected folder. None of them may be stopped.
func TestBenignSuiteNeverStopped(t *testing.T) {
	for _, tool := range []string{"tar", "gzip", "zip", "unzip", "git", "sqlite3", "openssl"} {
		testenv.RequireTool(t, tool)
	}
	dir, incidents, stop := armed(t)
	// Realistic content: documents and logs.
	for i := 0; i < 300; i++ {
		sub := filepath.Join(dir, "docs", fmt.Sprintf("d%02d", i%12))
		os.MkdirAll(sub, 0o755)
		os.WriteFile(filepath.Join(sub, fmt.Sprintf("note-%03d.txt", i)),
			[]byte(strings.Repeat(fmt.Sprintf("ward %d report line, status ok\n", i), 40+i)), 0o644)
	}
	os.MkdirAll(filepath.Join(dir, "logs"), 0o755)
	for i := 0; i < 40; i++ {
		os.WriteFile(filepath.Join(dir, "logs", fmt.Sprintf("app-%02d.log", i)),
			[]byte(strings.Repeat("2017-05-12T10:00:00 GET /index.html 200 512\n", 500)), 0o644)
	}
	steps := []struct{ name, script string }{
		{"tar+gzip a folder", "tar czf docs.tgz docs"},
		{"extract a tarball of hundreds of files", "mkdir x && tar xzf docs.tgz -C x"},
		{"gzip every log (originals replaced)", "gzip logs/*.log"},
		{"gunzip them back", "gunzip logs/*.gz"},
		{"zip and unzip", "zip -qr docs.zip docs && mkdir z && cd z && unzip -q ../docs.zip"},
		{"git init, commit, edit, gc", `git init -q repo && cp -r docs/d00 docs/d01 repo/ && cd repo &&
			git -c user.email=a@b -c user.name=n add . && git -c user.email=a@b -c user.name=n commit -qm one &&
			for f in d00/*.txt; do echo edited >> $f; done && git -c user.email=a@b -c user.name=n commit -qam two && git gc -q`},
		{"sqlite3 with thousands of writes", `sqlite3 db.sqlite "create table t(id integer primary key, name text, v real);" &&
			for i in $(seq 1 30); do
			  sqlite3 db.sqlite "begin; $(for j in $(seq 1 100); do echo "insert into t(name,v) values('patient $i-$j', $j.5);"; done) commit;"
			done && sqlite3 db.sqlite "update t set v = v*2; delete from t where id % 3 = 0; vacuum;"`},
		{"editor save-by-rename", `for f in docs/d02/*.txt; do cp $f $f.swp && echo "edit" >> $f.swp && mv $f.swp $f; done`},
		{"openssl enc on one file", "openssl enc -aes-256-cbc -pbkdf2 -pass pass:hospital -in docs/d03/note-003.txt -out docs/d03/note-003.txt.enc && rm docs/d03/note-003.txt"},
		{"cp -a then rm -rf", "cp -a docs docs-copy && rm -rf docs-copy"},
		{"one large random file", "head -c 50000000 /dev/urandom > big.bin"},
		{"bulk renames", `for f in docs/d04/*.txt; do mv "$f" "${f%.txt}.md"; done`},
	}
	for _, s := range steps {
		sh(t, dir, s.script)
		select {
		case inc := <-incidents:
			t.Fatalf("%s: stopped as ransomware: %s %v", s.name, inc.ID, inc.Indicators)
		default:
		}
	}
	stats := stop()
	select {
	case inc := <-incidents:
		t.Fatalf("benign suite stopped: %s %v %+v %v", inc.ID, inc.Indicators, inc.Actor, inc.Cmdline)
	default:
	}
	if stats.PermEvents == 0 || stats.CloseWrites == 0 {
		t.Fatalf("guard saw nothing: %+v", stats)
	}
	t.Logf("guard stats: %+v", stats)
}

// TestOneAttackerAmongBenignWork: the guard stops the attacker and only it.
func TestRandomFileOfOwnIsNotAnAttack(t *testing.T) {
	dir, incidents, stop := armed(t)
	b := make([]byte, 1<<20)
	rand.Read(b)
	for i := 0; i < 2; i++ {
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("key-%d.bin", i)), b, 0o600)
	}
	stop()
	select {
	case inc := <-incidents:
		t.Fatalf("two new random files made an incident: %v", inc.Indicators)
	default:
	}
}

// TestVaultIsClosedToOtherProcesses: while the guard runs, no other
// process may open the vault's files.
func TestVaultIsClosedToOtherProcesses(t *testing.T) {
	dir, _, stop := armed(t)
	defer stop()
	vaultDir := filepath.Join(filepath.Dir(dir), "vault")
	out, err := exec.Command("cat", filepath.Join(vaultDir, "index.db")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not permitted") {
		t.Fatalf("another process read the vault index: err=%v out=%.80q", err, out)
	}
}
