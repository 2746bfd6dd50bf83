package scan_test

import (
	"context"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/killswitch-dev/killswitch/internal/scan"
	"github.com/killswitch-dev/killswitch/internal/smblab"
	"github.com/killswitch-dev/killswitch/internal/testenv"
)

// labSpec is the 250-host lab the issue asks for: Samba in three
// configurations, every recorded Windows host, every hostile behaviour,
// closed and filtered addresses.
func labSpec(timeout time.Duration) smblab.LabSpec {
	return smblab.LabSpec{SambaEach: 50, RecordedEach: 10, HostileEach: 2, Closed: 12, Filtered: 10, Slow: 3 * timeout}
}

func startLab(t *testing.T, spec smblab.LabSpec) *smblab.Lab {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "smbd")
	testenv.RequireTool(t, "nft")
	testenv.RequireTool(t, "ip")
	pcaps, err := smblab.PcapDir()
	if err != nil {
		t.Fatal(err)
	}
	lab, err := smblab.StartLab(t.TempDir(), pcaps, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Error(err)
		}
	})
	return lab
}

func targetsOf(t *testing.T, lab *smblab.Lab) *scan.Targets {
	var specs []string
	for _, a := range lab.Addrs() {
		specs = append(specs, a.String())
	}
	targets, err := scan.NewTargets(context.Background(), scan.TargetOptions{Include: specs})
	if err != nil {
		t.Fatal(err)
	}
	return targets
}

// TestLab scans the 250-host lab: every verdict must be right, only the
// detection sequence may leave the scanner, and wherever nmap's scripts
// answer they must agree with us, or be wrong about the host.
func TestLab(t *testing.T) {
	const timeout = 2 * time.Second
	lab := startLab(t, labSpec(timeout))
	if lab.Len() < 250 {
		t.Fatalf("lab of %d hosts", lab.Len())
	}
	audit := &smblab.Audit{}
	opt := scan.DefaultOptions()
	opt.Ports, opt.Timeout, opt.Dial = []int{445}, timeout, audit.Dial
	var mu sync.Mutex
	results := map[netip.Addr]scan.Result{}
	sum, err := scan.Run(context.Background(), targetsOf(t, lab), opt, func(r scan.Result) {
		mu.Lock()
		results[r.IP] = r
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("killswitch: %d hosts in %s (%.0f hosts/s)", sum.Done, sum.Elapsed.Round(time.Millisecond), sum.HostsPerSecond())
	// A lab host that timed out where it should have answered is scanned
	// again (twice at most), as an operator would: on a loaded 2-core
	// machine one smbd serving 50 addresses can stall for seconds (seen in
	// CI, as a missing dialect or an MS17-010 "no-reply"). A wrong answer
	// that did not come from a time-out is never retried.
	for round := 1; round <= 2; round++ {
		var again []string
		for _, h := range lab.Hosts {
			r := results[h.Addr]
			timedOut := r.SMB1Reason == scan.ReasonNoReply || r.MS17010Reason == scan.ReasonNoReply ||
				r.DoublePulsarReason == scan.ReasonNoReply || strings.Contains(r.Detail, "i/o timeout")
			if timedOut && len(smblab.Check(r, h.Expect)) > 0 {
				again = append(again, h.Addr.String())
			}
		}
		if len(again) == 0 {
			break
		}
		t.Logf("round %d: scanning again %d hosts that did not answer in time: %v", round, len(again), again)
		targets, err := scan.NewTargets(context.Background(), scan.TargetOptions{Include: again})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := scan.Run(context.Background(), targets, opt, func(r scan.Result) {
			mu.Lock()
			results[r.IP] = r
			mu.Unlock()
		}); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range lab.Hosts {
		r, ok := results[h.Addr]
		if !ok {
			t.Errorf("%s (%s): no result", h.Addr, h.Kind)
			continue
		}
		if string(r.State) != h.State {
			t.Errorf("%s (%s): state %s, want %s (%s)", h.Addr, h.Kind, r.State, h.State, r.Detail)
		}
		for _, m := range smblab.Check(r, h.Expect) {
			t.Errorf("%s (%s): %s", h.Addr, h.Kind, m)
		}
	}
	conns, msgs, err := audit.Verify()
	if err != nil {
		t.Errorf("a probe beyond the detection sequence was sent: %v", err)
	}
	t.Logf("audit: %d connections, %d messages, all within the detection sequence", conns, msgs)

	if testing.Short() {
		return
	}
	testenv.RequireTool(t, "nmap")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	nm, took, err := smblab.RunNmap(ctx, lab.Addrs(), 445)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("nmap: %d hosts in %s", len(nm), took.Round(time.Millisecond))
	var dis []string
	for _, h := range lab.Hosts {
		n, ok := nm[h.Addr]
		if !ok {
			t.Errorf("%s (%s): nmap has no result", h.Addr, h.Kind)
			continue
		}
		for _, d := range smblab.CompareNmap(h.Kind, results[h.Addr], n, h.Expect) {
			if d.Correct != d.Ours {
				t.Errorf("%s: nmap is right and killswitch wrong: %s", h.Addr, d)
			}
			dis = append(dis, d.String())
		}
	}
	if f := os.Getenv("KILLSWITCH_NMAP_REPORT"); f != "" {
		os.WriteFile(f, []byte(strings.Join(dis, "\n")+"\n"), 0o644)
	}
	t.Logf("%d fields where nmap answered differently, killswitch right in each:\n%s", len(dis), summarize(dis))
}

// summarize counts identical disagreement lines.
func summarize(lines []string) string {
	count := map[string]int{}
	var order []string
	for _, l := range lines {
		if count[l] == 0 {
			order = append(order, l)
		}
		count[l]++
	}
	var b strings.Builder
	for _, l := range order {
		b.WriteString("  ")
		b.WriteString(l)
		if count[l] > 1 {
			b.WriteString(" (×" + strconv.Itoa(count[l]) + ")")
		}
		b.WriteString("\n")
	}
	return b.String()
}
