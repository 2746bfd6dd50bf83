// Command hubload measures how many agents one hub holds: N simulated
// agents, each with its own client certificate and its own mutual-TLS
// connection on loopback, send a heartbeat every 10 s (one in -incident-every
// carries an incident); it reports the p50 and p99 latency of those
// requests and finds the largest N whose p99 stays under the bound. The hub
// runs as its own process (the killswitch binary); the agents share the
// same 2 cores, so the figures are conservative.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/killswitch-dev/killswitch/internal/hub"
	"github.com/killswitch-dev/killswitch/internal/hub/pki"
	"github.com/killswitch-dev/killswitch/internal/hub/store"
)

func main() {
	bin := flag.String("killswitch", "killswitch", "the killswitch binary (runs the hub)")
	db := flag.String("db", "", "hub database: empty for SQLite, or a postgres:// URL (its tables are emptied)")
	counts := flag.String("agents", "1000,2500,5000,10000,15000,20000", "agent counts to try, in order")
	interval := flag.Duration("interval", 10*time.Second, "heartbeat interval")
	warm := flag.Duration("warm", 15*time.Second, "time before measuring (connections, handshakes)")
	measure := flag.Duration("measure", 30*time.Second, "measuring time")
	incidentEvery := flag.Int("incident-every", 50, "one heartbeat in this many carries an incident")
	bound := flag.Duration("p99", 200*time.Millisecond, "p99 bound")
	flag.Parse()
	backend := "sqlite"
	if *db != "" {
		backend = "postgres"
	}
	best := 0
	for _, s := range strings.Split(*counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		check(err)
		r, err := run(*bin, *db, n, *interval, *warm, *measure, *incidentEvery)
		check(err)
		ok := r.p99 < *bound && r.errors == 0
		fmt.Printf("%-8s agents %6d: %7.0f req/s  p50 %6.1f ms  p99 %7.1f ms (heartbeats %.1f, with an incident %.1f)  errors %d  incidents %d  %s\n",
			backend, n, r.rps, ms(r.p50), ms(r.p99), ms(r.hbP99), ms(r.incP99), r.errors, r.incidents, map[bool]string{true: "ok", false: "OVER"}[ok])
		if !ok {
			break
		}
		best = n
	}
	fmt.Printf("%s: largest N with p99 < %s: %d\n", backend, *bound, best)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

type result struct {
	rps       float64
	p50, p99  time.Duration
	hbP99     time.Duration // requests that are only a heartbeat
	incP99    time.Duration // requests that carry an incident
	errors    int64
	incidents int64
}

type identity struct {
	cert tls.Certificate
}

func run(bin, db string, n int, interval, warm, measure time.Duration, incidentEvery int) (result, error) {
	dir, err := os.MkdirTemp("", "hubload")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	if db != "" {
		if err := emptyPostgres(db); err != nil {
			return result{}, err
		}
	}
	// Enrol N hosts directly in the hub's store (the enrolment endpoint is
	// rate limited on purpose; it is not what is measured here).
	admin, err := hub.Open(context.Background(), hub.Config{DataDir: dir, DB: db})
	if err != nil {
		return result{}, err
	}
	ids := make([]identity, n)
	for i := range ids {
		keyPEM, csrPEM, err := pki.NewAgentKey("load")
		if err != nil {
			return result{}, err
		}
		id := store.NewID()
		certPEM, serial, err := admin.CA.SignAgent(csrPEM, id)
		if err != nil {
			return result{}, err
		}
		if err := admin.Store.AddHost(context.Background(), store.Host{ID: id, Name: fmt.Sprintf("load-%05d", i), Enrolled: time.Now(), CertSerial: serial}); err != nil {
			return result{}, err
		}
		if ids[i].cert, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
			return result{}, err
		}
	}
	admin.Close()

	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	args := []string{"hub", "--listen", addr, "--data", dir}
	if p := os.Getenv("HUBLOAD_CPUPROFILE"); p != "" {
		args = append(args, "--cpuprofile", p)
	}
	if db != "" {
		args = append(args, "--db", db)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if i > 200 {
			return result{}, fmt.Errorf("hub did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}

	ctx, cancel := context.WithTimeout(context.Background(), warm+measure)
	defer cancel()
	start := time.Now()
	measureFrom := start.Add(warm)
	var mu sync.Mutex
	var lat, hbLat, incLat []time.Duration
	var errors, incidents atomic.Int64
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{ids[i].cert}, InsecureSkipVerify: true},
				MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1, IdleConnTimeout: time.Minute}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
			select { // spread the agents over the interval
			case <-time.After(time.Duration(rand.Int64N(int64(interval)))):
			case <-ctx.Done():
				return
			}
			seq := int64(0)
			t := time.NewTicker(interval)
			defer t.Stop()
			for {
				batch := hub.ReportBatch{Version: "load", Reports: []store.Report{}}
				if rand.IntN(incidentEvery) == 0 {
					seq++
					body, _ := json.Marshal(map[string]any{"id": fmt.Sprintf("ks-load-%d", seq), "state": "frozen", "files": make([]int, 100)})
					batch.Reports = append(batch.Reports, store.Report{ID: store.NewID(), Seq: seq, Kind: store.KindIncident,
						Key: fmt.Sprintf("ks-load-%d", seq), Time: time.Now(), Body: body})
				}
				b, _ := json.Marshal(batch)
				t0 := time.Now()
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+"/v1/agent/reports", bytes.NewReader(b))
				resp, err := client.Do(req)
				d := time.Since(t0)
				if ctx.Err() != nil {
					return
				}
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("%s", resp.Status)
					}
				}
				if t0.After(measureFrom) {
					if err != nil {
						errors.Add(1)
					} else {
						mu.Lock()
						lat = append(lat, d)
						if len(batch.Reports) > 0 {
							incLat = append(incLat, d)
						} else {
							hbLat = append(hbLat, d)
						}
						mu.Unlock()
						incidents.Add(int64(len(batch.Reports)))
					}
				}
				select {
				case <-t.C:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	wg.Wait()
	if len(lat) == 0 {
		return result{errors: errors.Load()}, nil
	}
	return result{rps: float64(len(lat)) / measure.Seconds(), p50: pct(lat, 50), p99: pct(lat, 99), hbP99: pct(hbLat, 99), incP99: pct(incLat, 99),
		errors: errors.Load(), incidents: incidents.Load()}, nil
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[len(d)*p/100]
}

func emptyPostgres(dsn string) error {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	for _, t := range []string{"tokens", "hosts", "reports", "incidents", "scans", "actions", "audit", "users", "sessions"} {
		db.Exec("DROP TABLE IF EXISTS " + t)
	}
	return nil
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "hubload:", err)
		os.Exit(1)
	}
}
