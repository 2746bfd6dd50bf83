package sinkhole

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/killswitch-dev/killswitch/internal/alert"
)

// Hit is one request for a kill-switch name.
type Hit struct {
	Time   time.Time
	Source netip.Addr
	Domain string // the listed domain it fell under
	Name   string // what was asked: the DNS name or the HTTP host
	Via    string // "dns" or "http"
	Detail string // the query type, or the HTTP method and path
}

// Reporter turns hits into alerts, one per host per window: a worm asks
// again and again, and a flood of identical alerts would bury the host.
type Reporter struct {
	alerts *alert.Writer
	window time.Duration
	// OnAlert, when set, also receives each alert (the hub link).
	OnAlert func(alert.Alert)
	now     func() time.Time

	mu        sync.Mutex
	hosts     map[netip.Addr]*hostHits
	total     int
	untracked int
}

// maxHosts bounds the memory spoofed UDP sources can make the reporter use.
const maxHosts = 1 << 16

// sweep forgets hosts whose window has passed.
func (r *Reporter) sweep(now time.Time) {
	for a, st := range r.hosts {
		if now.Sub(st.first) > r.window {
			delete(r.hosts, a)
		}
	}
}

type hostHits struct {
	first   time.Time
	hits    int
	domains []string
}

// NewReporter writes alerts to w (may be nil) and groups a host's hits
// within window into its first alert.
func NewReporter(w *alert.Writer, window time.Duration) *Reporter {
	return &Reporter{alerts: w, window: window, now: time.Now, hosts: map[netip.Addr]*hostHits{}}
}

// Record counts h and raises an alert if it is the host's first hit in the
// window. It reports whether an alert was raised.
func (r *Reporter) Record(h Hit) bool {
	r.mu.Lock()
	r.total++
	st := r.hosts[h.Source]
	fresh := st == nil || h.Time.Sub(st.first) > r.window
	if fresh && st == nil && len(r.hosts) >= maxHosts {
		r.sweep(h.Time)
		if len(r.hosts) >= maxHosts { // a flood of spoofed sources: count, do not track
			r.untracked++
			r.mu.Unlock()
			return false
		}
	}
	if fresh {
		st = &hostHits{first: h.Time}
		r.hosts[h.Source] = st
	}
	st.hits++
	if !slices.Contains(st.domains, h.Domain) {
		st.domains = append(st.domains, h.Domain)
	}
	r.mu.Unlock()
	if !fresh {
		return false
	}
	al := alert.Alert{
		Timestamp: h.Time.UTC(),
		Message: fmt.Sprintf("%s asked for WannaCry's kill-switch domain %s (%s %s): the host is likely infected; isolate it",
			h.Source, h.Name, h.Via, h.Detail),
		Event:      alert.Event{Kind: "alert", Action: alert.ActionKillswitchLookup, Category: []string{"malware", "network"}, Type: []string{"indicator"}, Severity: 90},
		Source:     &alert.Source{IP: h.Source.String()},
		Killswitch: alert.Killswitch{Domains: []string{h.Domain}, Hits: 1},
	}
	if h.Via == "dns" {
		al.DNS = &alert.DNS{Question: alert.DNSQuestion{Name: h.Name, Type: h.Detail}}
	} else {
		al.URL = &alert.URL{Domain: h.Name}
	}
	if r.alerts != nil {
		r.alerts.Write(al)
	}
	if r.OnAlert != nil {
		r.OnAlert(al)
	}
	return true
}

// HostSummary is what one host asked in its current window.
type HostSummary struct {
	Source  netip.Addr
	First   time.Time
	Hits    int
	Domains []string
}

// Hosts lists the hosts seen, first asked first.
func (r *Reporter) Hosts() []HostSummary {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]HostSummary, 0, len(r.hosts))
	for a, st := range r.hosts {
		out = append(out, HostSummary{a, st.first, st.hits, slices.Clone(st.domains)})
	}
	slices.SortFunc(out, func(a, b HostSummary) int { return a.First.Compare(b.First) })
	return out
}

// Total is the number of hits recorded.
func (r *Reporter) Total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total
}
