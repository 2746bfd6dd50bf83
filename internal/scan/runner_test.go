package scan_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/killswitch-dev/killswitch/internal/scan"
	"github.com/killswitch-dev/killswitch/internal/smblab"
)

// servePort starts one peer per address on a common free port, so that a
// whole scan (which probes one port list on every host) can reach them.
func servePort(t *testing.T, peers map[netip.Addr]smblab.Peer) int {
	t.Helper()
	for try := 0; try < 20; try++ {
		probe, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := probe.Addr().(*net.TCPAddr).Port
		probe.Close()
		srv := smblab.NewServer()
		ok := true
		for a, p := range peers {
			if _, err := srv.Listen(a, port, p); err != nil {
				ok = false
				break
			}
		}
		if ok {
			t.Cleanup(srv.Close)
			return port
		}
		srv.Close()
	}
	t.Fatal("no common free port")
	return 0
}

func recordedPeers(t *testing.T) (map[netip.Addr]smblab.Peer, map[netip.Addr]smblab.Recorded) {
	dir, err := smblab.PcapDir()
	if err != nil {
		t.Fatal(err)
	}
	peers := map[netip.Addr]smblab.Peer{}
	kinds := map[netip.Addr]smblab.Recorded{}
	for i, h := range smblab.RecordedHosts(dir) {
		p, err := smblab.NewReplay(h.Name, h.Implant, h.Sources...)
		if err != nil {
			t.Fatal(err)
		}
		a := netip.AddrFrom4([4]byte{127, 0, 3, byte(i + 1)})
		peers[a], kinds[a] = p, h
	}
	return peers, kinds
}

func scanAll(t *testing.T, ctx context.Context, specs []string, opt scan.Options) ([]scan.Result, scan.Summary) {
	t.Helper()
	targets, err := scan.NewTargets(context.Background(), scan.TargetOptions{Include: specs})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var rs []scan.Result
	sum, err := scan.Run(ctx, targets, opt, func(r scan.Result) {
		mu.Lock()
		rs = append(rs, r)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	return rs, sum
}

// TestRunAndReports scans the recorded hosts plus a closed address through
// the runner and checks every report format.
func TestRunAndReports(t *testing.T) {
	peers, kinds := recordedPeers(t)
	port := servePort(t, peers)
	opt := scan.DefaultOptions()
	opt.Ports, opt.Timeout = []int{port}, 2*time.Second
	var progress []scan.Progress
	opt.Progress = func(p scan.Progress) { progress = append(progress, p) }
	rs, sum := scanAll(t, context.Background(), []string{"127.0.3.1-6", "127.0.3.200"}, opt)
	if sum.Done != 7 || sum.Results != 7 || len(rs) != 7 || sum.Open != 6 || sum.Interrupted {
		t.Fatalf("summary %+v, %d results", sum, len(rs))
	}
	if sum.Vulnerable != 5 { // five unpatched, three of them with the implant; anonymous-refused is unknown
		t.Errorf("%d vulnerable, want 5", sum.Vulnerable)
	}
	if last := progress[len(progress)-1]; last.Done != 7 || last.Total != 7 {
		t.Errorf("last progress %+v", last)
	}
	for _, r := range rs {
		if h, ok := kinds[r.IP]; ok {
			for _, m := range smblab.Check(r, h.Expect) {
				t.Errorf("%s: %s", h.Name, m)
			}
		} else if r.State != scan.PortClosed {
			t.Errorf("%s: %s, want closed", r.IP, r.State)
		}
	}

	var table bytes.Buffer
	if err := scan.WriteTable(&table, rs, false); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(table.String()), "\n")
	if !strings.HasPrefix(lines[1], "CRITICAL") || !strings.Contains(lines[1], "ISOLATE") || !strings.Contains(lines[len(lines)-1], "1 closed") {
		t.Errorf("table is not worst first, or hides the closed count:\n%s", table.String())
	}

	var out bytes.Buffer
	enc := scan.NewJSONWriter(&out)
	for _, r := range rs {
		enc.Write(r)
	}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"ip", "port", "state", "smb1", "dialects", "signing", "ms17_010", "ms17_010_reason", "doublepulsar"} {
			if _, ok := m[k]; !ok {
				t.Errorf("JSON line lacks %q: %s", k, line)
			}
		}
	}

	out.Reset()
	if err := scan.WriteCSV(&out, rs); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&out).ReadAll()
	if err != nil || len(rows) != 8 || rows[1][4] != "critical" {
		t.Errorf("CSV: %v %d rows %v", err, len(rows), rows[1])
	}

	out.Reset()
	if err := scan.WriteSARIF(&out, rs, "test"); err != nil {
		t.Fatal(err)
	}
	var sarif struct {
		Version string
		Runs    []struct {
			Results []struct{ RuleID string }
		}
	}
	if err := json.Unmarshal(out.Bytes(), &sarif); err != nil || sarif.Version != "2.1.0" || len(sarif.Runs) != 1 {
		t.Fatalf("SARIF: %v %+v", err, sarif)
	}
	rules := map[string]int{}
	for _, r := range sarif.Runs[0].Results {
		rules[r.RuleID]++
	}
	if rules["KS001"] != 3 || rules["KS002"] != 5 || rules["KS004"] != 1 {
		t.Errorf("SARIF findings by rule: %v", rules)
	}
}

// TestInterrupt: cancelling a scan ends the exchanges in flight and
// returns what was finished.
func TestInterrupt(t *testing.T) {
	silent := smblab.HostileHosts(time.Minute)
	var peer smblab.Peer
	for _, h := range silent {
		if h.Name == "silent" {
			peer = h.Peer
		}
	}
	peers := map[netip.Addr]smblab.Peer{}
	for i := range 20 {
		peers[netip.AddrFrom4([4]byte{127, 0, 4, byte(i + 1)})] = peer
	}
	port := servePort(t, peers)
	opt := scan.DefaultOptions()
	opt.Ports, opt.Timeout, opt.Concurrency = []int{port}, time.Minute, 4
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	rs, sum := scanAll(t, ctx, []string{"127.0.4.1-20"}, opt)
	if !sum.Interrupted || sum.Done >= 20 {
		t.Errorf("summary %+v", sum)
	}
	for _, r := range rs {
		if r.SMB1 != nil || r.MS17010 == scan.MS17Patched {
			t.Errorf("an interrupted probe claims a verdict: %+v", r)
		}
	}
}

func TestRunRejectsBadOptions(t *testing.T) {
	targets, _ := scan.NewTargets(context.Background(), scan.TargetOptions{Include: []string{"127.0.0.1"}})
	for _, o := range []scan.Options{{}, {Ports: []int{0}, Concurrency: 1, Timeout: 1, HostRate: 1}, {Ports: []int{445}, Concurrency: 0, Timeout: 1, HostRate: 1}} {
		if _, err := scan.Run(context.Background(), targets, o, func(scan.Result) {}); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
}
