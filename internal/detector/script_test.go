package detector

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files from the detector's current verdicts")

// A script is a recorded event sequence, one event per line:
//
//	+DURATION pid=N[s][,PARENT[s]...] op=write|delete|rename path=P [new=P] [pre=GEN] [post=GEN] [preserved] [replaced]
//
// GEN makes content deterministically: text:N, random:N, zeros:N,
// b64random:N (base64 of random bytes), gzip:N (real gzip of N bytes of
// text), fakegzip:N (gzip magic on random bytes), stripes (pre with every
// other 16 bytes of the pre content encrypted: post only), salted:N (openssl "Salted__" header + random),
// note (a ransom note). Lineages list the pid first, then its ancestors;
// an "s" after a pid marks a file server's process (Actor.Server).
// The golden file beside each script holds every finding and decision.
func TestScripts(t *testing.T) {
	scripts, _ := filepath.Glob("testdata/*.script")
	if len(scripts) == 0 {
		t.Fatal("no scripts in testdata")
	}
	for _, s := range scripts {
		t.Run(strings.TrimSuffix(filepath.Base(s), ".script"), func(t *testing.T) {
			got := run(t, s)
			golden := strings.TrimSuffix(s, ".script") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("verdicts differ from %s (run with -update if the change is intended)\n--- got\n%s--- want\n%s", golden, got, want)
			}
		})
	}
}

func run(t *testing.T, script string) string {
	f, err := os.Open(script)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := New(DefaultConfig())
	now := time.Date(2017, 5, 12, 8, 0, 0, 0, time.UTC)
	rng := rand.New(rand.NewPCG(1, 2))
	var out bytes.Buffer
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		ev, dt, err := parseEvent(text, rng)
		if err != nil {
			t.Fatalf("%s:%d: %v", script, line, err)
		}
		now = now.Add(dt)
		ev.Time = now
		dec, finding := d.Observe(ev)
		if finding.Name != "" {
			fmt.Fprintf(&out, "%d: %s %s: %s\n", line, ev.Op, ev.Path, finding.Name)
		}
		if dec != nil {
			fmt.Fprintf(&out, "%d: STOP pid %d score %.2f damaged %d %v\n", line, dec.Actor.PID, dec.Score, len(dec.Damaged), dec.Indicators)
		}
	}
	if out.Len() == 0 {
		out.WriteString("no findings\n")
	}
	return out.String()
}

func parseEvent(s string, rng *rand.Rand) (Event, time.Duration, error) {
	f := strings.Fields(s)
	if len(f) < 2 || !strings.HasPrefix(f[0], "+") {
		return Event{}, 0, fmt.Errorf("want +DURATION first: %q", s)
	}
	dt, err := time.ParseDuration(f[0][1:])
	if err != nil {
		return Event{}, 0, err
	}
	var ev Event
	for _, kv := range f[1:] {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "pid":
			for _, p := range strings.Split(v, ",") {
				p, server := strings.CutSuffix(p, "s")
				n, err := strconv.Atoi(p)
				if err != nil {
					return ev, 0, err
				}
				ev.Lineage = append(ev.Lineage, Actor{ID: p + "@1", PID: n, Executable: "/usr/bin/p" + p, Server: server})
			}
		case "op":
			ev.Op = Op(v)
		case "path":
			ev.Path = v
		case "new":
			ev.NewPath = v
		case "preserved":
			ev.Preserved = true
		case "replaced":
			ev.Replaced = true
		case "pre", "post":
			b, err := gen(v, ev.Pre, rng)
			if err != nil {
				return ev, 0, err
			}
			if k == "pre" {
				ev.Pre, ev.Preserved, ev.PreHash = b, true, fmt.Sprintf("%x", len(b))
			} else {
				ev.Post, ev.PostHash = b, fmt.Sprintf("%x", hashOf(b))
			}
		default:
			return ev, 0, fmt.Errorf("unknown key %q", k)
		}
	}
	return ev, dt, nil
}

func hashOf(b []byte) uint64 {
	h := uint64(1469598103934665603)
	for _, c := range b {
		h = (h ^ uint64(c)) * 1099511628211
	}
	return h
}

func gen(spec string, pre []byte, rng *rand.Rand) ([]byte, error) {
	if spec == "note" {
		return []byte("Ooops, your important files are encrypted. Send $300 worth of bitcoin to this address.\n"), nil
	}
	if spec == "stripes" { // the previous content with every other 16 bytes encrypted
		b := append([]byte(nil), pre...)
		for i := 0; i < len(b); i += 32 {
			for j := i; j < min(i+16, len(b)); j++ {
				b[j] = byte(rng.Uint32())
			}
		}
		return b, nil
	}
	kind, ns, _ := strings.Cut(spec, ":")
	n, err := strconv.Atoi(ns)
	if err != nil {
		return nil, fmt.Errorf("content %q: %w", spec, err)
	}
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	text := func(n int) []byte {
		w := []string{"patient ", "ward ", "report ", "invoice ", "parcel ", "the ", "of ", "and\n"}
		var b bytes.Buffer
		for b.Len() < n {
			b.WriteString(w[rng.IntN(len(w))])
		}
		return b.Bytes()[:n]
	}
	switch kind {
	case "text":
		return text(n), nil
	case "random":
		return random(n), nil
	case "zeros":
		return make([]byte, n), nil
	case "b64random":
		return []byte(base64.StdEncoding.EncodeToString(random(n * 3 / 4))), nil
	case "gzip":
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		w.Write(text(n))
		w.Close()
		return b.Bytes(), nil
	case "fakegzip":
		return append([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3}, random(n)...), nil
	case "salted":
		return append([]byte("Salted__"), random(n)...), nil
	}
	return nil, fmt.Errorf("unknown content %q", spec)
}

// TestMemoryIsBounded: a flood of benign events from many processes never
// grows the detector's memory past its budget.
func TestMemoryIsBounded(t *testing.T) {
	d := New(DefaultConfig())
	now := time.Date(2017, 5, 12, 8, 0, 0, 0, time.UTC)
	for i := 0; i < 3*maxTotalHistory; i++ {
		pid := 1000 + i%5000
		ev := Event{Time: now, Op: Delete, Path: fmt.Sprintf("/srv/f%d", i),
			Lineage: []Actor{{ID: fmt.Sprintf("%d@1", pid), PID: pid}, {ID: "400@1", PID: 400}}}
		if dec, _ := d.Observe(ev); dec != nil {
			t.Fatal("benign deletes stopped")
		}
	}
	if d.Memory() > maxTotalHistory+maxHistory {
		t.Fatalf("detector holds %d history records, budget %d", d.Memory(), maxTotalHistory)
	}
}
