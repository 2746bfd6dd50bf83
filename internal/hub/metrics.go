package hub

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the hub's Prometheus series, on a registry of its own so
// that several hubs in one process (tests) do not collide.
type metrics struct {
	reg       *prometheus.Registry
	reports   *prometheus.CounterVec
	incidents *prometheus.CounterVec
	rejected  *prometheus.CounterVec
	webhooks  *prometheus.CounterVec
	ingest    prometheus.Histogram
}

func newMetrics() *metrics {
	m := &metrics{
		reg:       prometheus.NewRegistry(),
		reports:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "killswitch_hub_reports_total", Help: "Agent reports applied, by kind."}, []string{"kind"}),
		incidents: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "killswitch_hub_incidents_total", Help: "New incidents, by kind."}, []string{"kind"}),
		rejected:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "killswitch_hub_rejected_total", Help: "Requests refused, by reason."}, []string{"reason"}),
		webhooks:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "killswitch_hub_webhooks_total", Help: "Webhook deliveries, by result."}, []string{"result"}),
		ingest: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "killswitch_hub_ingest_seconds", Help: "Time to handle one agent report batch.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
	}
	m.reg.MustRegister(m.reports, m.incidents, m.rejected, m.webhooks, m.ingest,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler { return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}) }
