package guard

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/killswitch-dev/killswitch/internal/testenv"
)

// TestMetricsWhileRunning: the Prometheus collector reports what the
// running guard did, and may be scraped while it runs (go test -race).
func TestMetricsWhileRunning(t *testing.T) {
	g, dir, _, stop := armedGuard(t)
	defer stop()
	reg := prometheus.NewRegistry()
	reg.MustRegister(g.Collector())
	// Another process writes and reads files: opens and close-writes.
	for i := range 20 {
		p := filepath.Join(dir, fmt.Sprintf("note-%d.txt", i))
		sh(t, dir, fmt.Sprintf("echo 'ward round %d' > %s && cat %s >/dev/null", i, p, p))
	}
	testenv.WaitFor(t, "the counters", func() bool { return gathered(t, reg)["killswitch_guard_close_writes_total"] >= 20 })
	got := gathered(t, reg)
	if got["killswitch_guard_permission_events_total"] < 1 || got["killswitch_guard_permission_decision_seconds_count"] < 1 {
		t.Errorf("gathered %v", got)
	}
	if got["killswitch_guard_incidents_total"] != 0 {
		t.Errorf("incidents = %v", got["killswitch_guard_incidents_total"])
	}
}

// gathered scrapes reg: counters by name, histograms as NAME_count.
func gathered(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if c := m.GetCounter(); c != nil {
				out[mf.GetName()] = c.GetValue()
			}
			if h := m.GetHistogram(); h != nil {
				out[mf.GetName()+"_count"] = float64(h.GetSampleCount())
			}
		}
	}
	return out
}
