package scan_test

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/killswitch-dev/killswitch/internal/scan"
	"github.com/killswitch-dev/killswitch/internal/smblab"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var loopback = netip.MustParseAddr("127.0.0.1")

// serve starts peer on a free loopback port.
func serve(t *testing.T, p smblab.Peer) netip.AddrPort {
	t.Helper()
	srv := smblab.NewServer()
	t.Cleanup(srv.Close)
	ap, err := srv.Listen(loopback, 0, p)
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

// TestRecordedWindows replays real Windows hosts from the captures: every
// verdict must match what the capture shows.
func TestRecordedWindows(t *testing.T) {
	dir, err := smblab.PcapDir()
	if err != nil {
		t.Fatalf("the captures in ../shared/data/pcaps are needed: %v", err)
	}
	p := &scan.Prober{Timeout: 2 * time.Second}
	for _, h := range smblab.RecordedHosts(dir) {
		t.Run(h.Name, func(t *testing.T) {
			peer, err := smblab.NewReplay(h.Name, h.Implant, h.Sources...)
			if err != nil {
				t.Fatal(err)
			}
			ap := serve(t, peer)
			r := p.Probe(context.Background(), ap.Addr(), int(ap.Port()), nil)
			for _, m := range smblab.Check(r, h.Expect) {
				t.Error(m)
			}
			if r.Vulnerable() != (h.Expect.MS17 == "vulnerable" || h.Expect.DoublePulsar != nil && *h.Expect.DoublePulsar) {
				t.Errorf("Vulnerable() = %v for %+v", r.Vulnerable(), r)
			}
		})
	}
}

// TestKnownImplantKeys checks the XOR keys derived from the signatures of
// real implant replies against the published values.
func TestKnownImplantKeys(t *testing.T) {
	dir, err := smblab.PcapDir()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"win7-ent-wannacry-doublepulsar-x64": "0x57D0C042", // signature 3a10e036 01000000
		"win7-ent-wannacry-doublepulsar-x86": "0x1740BAD9", // signature 21f1589b 00000000
	}
	p := &scan.Prober{Timeout: 2 * time.Second}
	for _, h := range smblab.RecordedHosts(dir) {
		if want[h.Name] == "" {
			continue
		}
		peer, err := smblab.NewReplay(h.Name, h.Implant, h.Sources...)
		if err != nil {
			t.Fatal(err)
		}
		ap := serve(t, peer)
		r := p.Probe(context.Background(), ap.Addr(), int(ap.Port()), nil)
		if r.DoublePulsarKey != want[h.Name] {
			t.Errorf("%s: key %s, want %s", h.Name, r.DoublePulsarKey, want[h.Name])
		}
	}
}

// TestHostilePeers: garbage, truncated and giant frames, slowloris, resets
// and wrong MIDs end in an "unknown" (or, for an immediate reset, "SMBv1
// off"), never a crash, a hang or a "not vulnerable".
func TestHostilePeers(t *testing.T) {
	const timeout = 300 * time.Millisecond
	p := &scan.Prober{Timeout: timeout}
	for _, h := range smblab.HostileHosts(4 * timeout) {
		t.Run(h.Name, func(t *testing.T) {
			t.Parallel()
			ap := serve(t, h.Peer)
			r := p.Probe(context.Background(), ap.Addr(), int(ap.Port()), nil)
			if r.State != scan.PortOpen {
				t.Fatalf("state %s (%s)", r.State, r.Detail)
			}
			if r.MS17010 == scan.MS17Patched || r.MS17010 == scan.MS17Vulnerable {
				t.Errorf("ms17_010 %s from a peer that never ran the check", r.MS17010)
			}
			for _, m := range smblab.Check(r, h.Expect) {
				t.Error(m)
			}
			if r.SMB1 == nil && r.SMB1Reason == "" {
				t.Error("unknown SMBv1 without a reason")
			}
		})
	}
}

func TestClosedPort(t *testing.T) {
	srv := smblab.NewServer()
	ap, err := srv.Listen(loopback, 0, smblab.PeerFunc(func(c net.Conn) {}))
	if err != nil {
		t.Fatal(err)
	}
	srv.Close() // now nothing listens there
	r := (&scan.Prober{Timeout: time.Second}).Probe(context.Background(), ap.Addr(), int(ap.Port()), nil)
	if r.State != scan.PortClosed || r.MS17010 != scan.MS17NotApplicable || r.MS17010Reason != scan.ReasonPortClosed || r.SMB1 != nil {
		t.Errorf("closed port reported as %+v", r)
	}
	if r.Severity() != scan.SevNone || slices.Contains([]string{""}, r.Advice()) == false {
		t.Errorf("closed port: severity %s advice %q", r.Severity(), r.Advice())
	}
}
