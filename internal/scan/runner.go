package scan

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Options tune a scan. The defaults suit a LAN: see DefaultOptions.
type Options struct {
	Ports []int
	// Concurrency is how many hosts are probed at once. Each host is its
	// own goroutine, so one slow host never holds up another.
	Concurrency int
	// Rate caps new connections per second across the whole scan (0: none).
	Rate float64
	// HostRate caps new connections per second to any one host.
	HostRate float64
	// Timeout bounds each connect and each request/reply exchange.
	Timeout time.Duration
	// Retries is how many times a check that got no answer in time is run
	// again on a new connection (see Prober.Retries).
	Retries int
	// Dial replaces the TCP dialer (tests capture the bytes sent with it).
	Dial DialFunc
	// Progress, when set, is called after each host with the running counts.
	Progress func(Progress)
}

// DefaultOptions are what `killswitch scan` uses unless told otherwise.
func DefaultOptions() Options {
	return Options{Ports: []int{445, 139}, Concurrency: 512, Rate: 2000, HostRate: 20, Timeout: 2 * time.Second, Retries: 1}
}

// Progress is a snapshot of a running scan.
type Progress struct {
	Done, Total uint64 // hosts
	Open        int    // host:ports that answered
	Vulnerable  int    // results with Vulnerable()
	Elapsed     time.Duration
}

// Summary is what a finished (or interrupted) scan did.
type Summary struct {
	Progress
	Results     int
	Interrupted bool
}

// HostsPerSecond is the scan's throughput.
func (s Summary) HostsPerSecond() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Done) / s.Elapsed.Seconds()
}

// Run scans every target on every port and calls emit with each result, from
// one goroutine at a time. When ctx is cancelled it stops starting hosts,
// ends the exchanges in flight, and returns what it has.
func Run(ctx context.Context, targets *Targets, o Options, emit func(Result)) (Summary, error) {
	if len(o.Ports) == 0 {
		return Summary{}, fmt.Errorf("scan: no ports")
	}
	for _, p := range o.Ports {
		if p < 1 || p > 65535 {
			return Summary{}, fmt.Errorf("scan: port %d out of range", p)
		}
	}
	if o.Concurrency < 1 || o.Timeout <= 0 || o.HostRate <= 0 || o.Rate < 0 {
		return Summary{}, fmt.Errorf("scan: concurrency, timeout and host rate must be positive, rate not negative")
	}
	global := rate.NewLimiter(rate.Inf, 0)
	if o.Rate > 0 {
		global = rate.NewLimiter(rate.Limit(o.Rate), max(1, int(o.Rate/20)))
	}
	prober := &Prober{Timeout: o.Timeout, Dial: o.Dial, Retries: o.Retries}
	start := time.Now()

	var mu sync.Mutex // guards sum and emit
	sum := Summary{Progress: Progress{Total: targets.Len()}}
	report := func(rs []Result) {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range rs {
			if r.SMB1Reason == ReasonInterrupted && r.MS17010Reason == ReasonInterrupted {
				continue // cut off before anything was learned
			}
			r.Name = targets.Name(r.IP)
			if r.State == PortOpen {
				sum.Open++
			}
			if r.Vulnerable() {
				sum.Vulnerable++
			}
			sum.Results++
			emit(r)
		}
		sum.Done++
		sum.Elapsed = time.Since(start)
		if o.Progress != nil {
			o.Progress(sum.Progress)
		}
	}

	sem := make(chan struct{}, o.Concurrency)
	var wg sync.WaitGroup
	targets.Each(func(a netip.Addr) bool {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return false
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			report(scanHost(ctx, prober, a, o, global))
		}()
		return true
	})
	wg.Wait()
	sum.Elapsed = time.Since(start)
	sum.Interrupted = ctx.Err() != nil
	return sum, nil
}

// scanHost probes every port of one host in parallel, under the host's own
// rate limit and the global one.
func scanHost(ctx context.Context, p *Prober, a netip.Addr, o Options, global *rate.Limiter) []Result {
	host := rate.NewLimiter(rate.Limit(o.HostRate), max(2, len(o.Ports)))
	wait := func(ctx context.Context) error {
		if err := host.Wait(ctx); err != nil {
			return err
		}
		return global.Wait(ctx)
	}
	out := make([]Result, len(o.Ports))
	var wg sync.WaitGroup
	for i, port := range o.Ports {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = p.Probe(ctx, a, port, wait)
		}()
	}
	wg.Wait()
	return out
}
