package guard

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are what `killswitch guard --metrics` serves. The counters are
// read from the loop's published snapshot at scrape time; the latency
// histogram is observed on the permission path (tens of nanoseconds).
type metrics struct {
	permLatency prometheus.Histogram
	descs       map[string]*prometheus.Desc
}

func newMetrics() *metrics {
	m := &metrics{
		permLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "killswitch_guard_permission_decision_seconds",
			Help:    "Time the guard took to answer an open of a protected file (the writer waits for it).",
			Buckets: prometheus.ExponentialBuckets(1e-6, 4, 10), // 1 µs to 0.26 s
		}),
		descs: map[string]*prometheus.Desc{},
	}
	for name, help := range counterHelp {
		m.descs[name] = prometheus.NewDesc("killswitch_guard_"+name, help, nil, nil)
	}
	return m
}

var counterHelp = map[string]string{
	"permission_events_total": "Opens of protected files the guard answered.",
	"ignore_marks_total":      "Files the kernel was told to stop reporting until modified.",
	"catch_ups_total":         "Versions preserved on the permission path because the vault's copy was stale.",
	"close_writes_total":      "Writes judged when the writer closed the file.",
	"directory_events_total":  "Creations, deletions and renames seen.",
	"queue_overflows_total":   "Times the kernel's event queue overflowed (events lost; a rescan followed).",
	"incidents_total":         "Attacks stopped.",
}

// Collector exports the guard's counters and its permission-path latency
// for Prometheus. Safe to scrape while the guard runs.
func (g *Guard) Collector() prometheus.Collector { return (*collector)(g) }

type collector Guard

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.metrics.descs {
		ch <- d
	}
	c.metrics.permLatency.Describe(ch)
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := (*Guard)(c).Snapshot()
	for name, v := range map[string]int{
		"permission_events_total": s.PermEvents, "ignore_marks_total": s.Ignored, "catch_ups_total": s.CatchUps,
		"close_writes_total": s.CloseWrites, "directory_events_total": s.Dirents, "queue_overflows_total": s.Overflows,
		"incidents_total": s.Incidents,
	} {
		ch <- prometheus.MustNewConstMetric(c.metrics.descs[name], prometheus.CounterValue, float64(v))
	}
	c.metrics.permLatency.Collect(ch)
}
