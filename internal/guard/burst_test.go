package guard

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/killswitch-dev/killswitch/internal/alert"
	"github.com/killswitch-dev/killswitch/internal/testenv"
	"github.com/killswitch-dev/killswitch/internal/vault"
)

// burstEnv makes the test binary act as the event generator.
const burstEnv = "KILLSWITCH_BURST_DIR"

// burst creates, renames and deletes empty files (five events each: open
// permission, create, close-write, rename, delete), and then churns
// symlinks, whose events no permission answer slows down, to try to
// overflow the guard's directory-event queue.
func burst(dir string, n int) {
	for i := 0; i < n; i++ {
		p := filepath.Join(dir, "b"+strconv.Itoa(i%1000))
		f, err := os.Create(p)
		if err != nil {
			os.Exit(3)
		}
		f.Close()
		os.Rename(p, p+".r")
		os.Remove(p + ".r")
	}
	for i := 0; i < n; i++ {
		p := filepath.Join(dir, "l"+strconv.Itoa(i%1000))
		os.Symlink("target", p)
		os.Remove(p)
	}
}

// TestMillionEventBurst: a burst of a million events does not crash the
// guard or grow its memory without bound; any overflow is reported as an
// alert; the guard still preserves files afterwards.
func TestMillionEventBurst(t *testing.T) {
	if dir := os.Getenv(burstEnv); dir != "" {
		n, _ := strconv.Atoi(os.Getenv("KILLSWITCH_BURST_N"))
		burst(dir, n)
		return
	}
	testenv.RequireRoot(t)
	base := t.TempDir()
	dir := filepath.Join(base, "protected")
	os.Mkdir(dir, 0o755)
	var alerts bytes.Buffer
	ready := make(chan struct{})
	g, err := New(Config{Roots: []string{dir}, VaultDir: filepath.Join(base, "vault"),
		Alerts: alert.NewWriter(&syncWriter{w: &alerts}), Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Ready: func() { close(ready) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	<-ready
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	before := heap()
	iterations := burstIterations() // x7 events
	cmd := exec.Command(os.Args[0], "-test.run=^TestMillionEventBurst$")
	cmd.Env = append(os.Environ(), burstEnv+"="+dir, "KILLSWITCH_BURST_N="+strconv.Itoa(iterations))
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("burst: %v\n%s", err, out)
	}
	elapsed := time.Since(start)
	// The guard still works: a file written now is preserved.
	final := filepath.Join(dir, "after-burst.txt")
	if err := exec.Command("sh", "-c", "echo still guarded > "+final).Run(); err != nil {
		t.Fatal(err)
	}
	var preserved bool
	for i := 0; i < 200 && !preserved; i++ {
		_, s, ok := g.files.lookupPath(final)
		preserved = ok && s.size == int64(len("still guarded\n"))
		time.Sleep(10 * time.Millisecond)
	}
	after := heap()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("guard after the burst: %v", err)
	}
	st := g.Stats()
	t.Logf("burst of %d events took %v; guard saw perm=%d close-writes=%d dirents=%d overflows=%d; heap %d -> %d KiB",
		iterations*7, elapsed.Round(time.Millisecond), st.PermEvents, st.CloseWrites, st.Dirents, st.Overflows, before>>10, after>>10)
	if !preserved {
		t.Error("a file written after the burst was not preserved")
	}
	if after > before+256<<20 {
		t.Errorf("heap grew from %d to %d MiB", before>>20, after>>20)
	}
	if st.Overflows > 0 && !bytes.Contains(alerts.Bytes(), []byte(alert.ActionQueueOverflow)) {
		t.Error("queue overflow not reported as an alert")
	}
	if st.PermEvents+st.CloseWrites+st.Dirents < iterations {
		t.Errorf("guard saw too few events: %+v", st)
	}
	v, err := vault.Open(filepath.Join(base, "vault"))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if r, err := v.Check(); err != nil || !r.OK() {
		t.Fatalf("vault check after the burst: %+v %v", r, err)
	}
}

// syncWriter is a mutex-free wrapper: alert.Writer already serialises.
type syncWriter struct{ w io.Writer }

func (s *syncWriter) Write(p []byte) (int, error) { return s.w.Write(p) }

func burstIterations() int {
	if n, err := strconv.Atoi(os.Getenv("KILLSWITCH_BURST_ITERATIONS")); err == nil {
		return n
	}
	return 150000 // over a million events
}
