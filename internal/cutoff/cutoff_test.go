package cutoff

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/killswitch-dev/killswitch/internal/netns"
	"github.com/killswitch-dev/killswitch/internal/testenv"
)

func FuzzParseState(f *testing.F) {
	f.Add([]byte(`{"version":1,"cut_off":[{"address":"198.18.1.1","since":"2026-11-26T03:40:45Z","incident":"ks-20261126T034045-24464"}]}`))
	f.Add([]byte(`{"version":1,"cut_off":[{"address":"::ffff:10.0.0.1"}]}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, data []byte) {
		list, err := ParseState(data)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, e := range list {
			a, err := netip.ParseAddr(e.Address)
			if err != nil || a.Unmap().String() != e.Address || seen[e.Address] {
				t.Fatalf("accepted %+v", e)
			}
			seen[e.Address] = true
		}
	})
}

func TestParseStateRefuses(t *testing.T) {
	for _, bad := range []string{`{"version":2,"cut_off":[]}`, `{"version":1,"cut_off":[{"address":"10.0.0.300"}]}`,
		`{"version":1,"cut_off":[{"address":"::ffff:10.0.0.1"}]}`, `{"version":1,"cut_off":[{"address":"10.0.0.1"},{"address":"10.0.0.1"}]}`,
		`{"version":1,"cut_off":[{"address":"10.0.0.1","incident":"a b"}]}`, `{"version":1,"cut_off":[],"extra":1}`, `[`} {
		if _, err := ParseState([]byte(bad)); err == nil {
			t.Errorf("ParseState(%s) accepted", bad)
		}
	}
}

// TestPeer: the remote address of a real connection to a file-sharing
// port, found from this process's own sockets, over IPv4 and IPv6.
func TestPeer(t *testing.T) {
	for _, tc := range []struct{ listen, from, want string }{
		{"127.77.0.1:445", "127.77.0.2", "127.77.0.2"},
		{"[::1]:139", "::1", "::1"},
	} {
		t.Run(tc.listen, func(t *testing.T) {
			l, err := net.Listen("tcp", tc.listen)
			if err != nil {
				testenv.Skip(t, "cannot listen on "+tc.listen+": "+err.Error())
			}
			defer l.Close()
			if _, err := Peer("/proc", os.Getpid()); err == nil {
				t.Fatal("a listening socket was taken for a client")
			}
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(tc.from)}}
			c, err := d.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			want := netip.MustParseAddr(tc.want)
			got, err := Peer("/proc", os.Getpid())
			if err != nil || got != want {
				t.Fatalf("Peer = %v, %v; want %v", got, err, want)
			}
			self, _ := os.Executable()
			if pids := Serving("/proc", self, got); !slices.Contains(pids, os.Getpid()) {
				t.Errorf("Serving = %v, want this process", pids)
			}
		})
	}
}

// TestBlockAndRelease runs the real nftables rules inside a namespace of
// the test's own: a client cut off cannot connect to port 445, another
// can, and release lets it back.
func TestBlockAndRelease(t *testing.T) {
	testenv.RequireTool(t, "nft")
	ns := testenv.Netns(t, 202, 203)
	nftArgv := []string{"ip", "netns", "exec", ns, "nft"}
	listen445(t, ns)
	ctx := context.Background()
	fw := Firewall{NFT: nftArgv, State: filepath.Join(t.TempDir(), "cutoff.json")}
	if l, err := fw.List(); err != nil || len(l) != 0 {
		t.Fatalf("List before any cut-off = %v, %v", l, err)
	}
	cut := netip.MustParseAddr("10.202.0.1")
	for range 2 { // twice: blocking again must not add rules, entries, or fail
		if err := fw.Block(ctx, cut, "ks-1"); err != nil {
			t.Fatal(err)
		}
	}
	if l, err := fw.List(); err != nil || len(l) != 1 || l[0].Address != cut.String() || l[0].Incident != "ks-1" {
		t.Fatalf("List = %+v, %v; want %v from ks-1", l, err, cut)
	}
	if reach("10.202.0.2:445") {
		t.Error("the cut-off client still connects")
	}
	if !reach("10.203.0.2:445") {
		t.Error("another client was cut off too")
	}
	// A reboot empties nftables; the list puts the cut-off back.
	if out, err := exec.Command("ip", "netns", "exec", ns, "nft", "delete", "table", "inet", table).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if !reach("10.202.0.2:445") {
		t.Fatal("the table is gone but the client is still cut off")
	}
	if l, err := fw.Apply(ctx); err != nil || len(l) != 1 {
		t.Fatalf("Apply = %v, %v", l, err)
	}
	if reach("10.202.0.2:445") {
		t.Error("the cut-off was not applied again")
	}
	if err := fw.Release(ctx, cut); err != nil {
		t.Fatal(err)
	}
	if !reach("10.202.0.2:445") {
		t.Error("the released client cannot connect")
	}
	if err := fw.Release(ctx, cut); !errors.Is(err, ErrNotCutOff) {
		t.Errorf("releasing an address that is not cut off: %v", err)
	}
	// Released while nftables was empty (after a reboot, before the guard
	// ran again): the list changes and nft does not fail.
	fw.Block(ctx, cut, "ks-2")
	exec.Command("ip", "netns", "exec", ns, "nft", "delete", "table", "inet", table).Run()
	if err := fw.Release(ctx, cut); err != nil {
		t.Errorf("release with no table: %v", err)
	}
}

// TestBlockIPv6: a client with an IPv6 address is cut off by the IPv6 set.
func TestBlockIPv6(t *testing.T) {
	testenv.RequireTool(t, "nft")
	testenv.RequireRoot(t)
	ns, err := netns.New("ks6-")
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	client, server, err := netns.Link(nil, ns, netip.MustParsePrefix("fd00:4b53:208::/64"))
	if err != nil {
		t.Fatal(err)
	}
	listen445(t, ns.Name)
	target := netip.AddrPortFrom(server, 445).String()
	if !reach(target) {
		t.Fatalf("%s not reachable before the cut-off", target)
	}
	fw := Firewall{NFT: ns.Argv("nft"), State: filepath.Join(t.TempDir(), "cutoff.json")}
	if err := fw.Block(context.Background(), client, "ks-6"); err != nil {
		t.Fatal(err)
	}
	if reach(target) {
		t.Errorf("%s still connects after being cut off", client)
	}
	if err := fw.Release(context.Background(), client); err != nil || !reach(target) {
		t.Errorf("after release: %v, reachable %v", err, reach(target))
	}
}

// listen445 runs a listener on port 445 inside namespace ns (this test
// binary again, as TestHelperListener) until the test ends.
func listen445(t *testing.T, ns string) {
	t.Helper()
	ln := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestHelperListener$")
	ln.Env = append(os.Environ(), "CUTOFF_TEST_LISTEN=1")
	out, _ := ln.StdoutPipe()
	if err := ln.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Process.Kill(); ln.Wait() })
	buf := make([]byte, 3)
	if _, err := io.ReadFull(out, buf); err != nil || string(buf) != "up\n" {
		t.Fatalf("listener in the namespace: %q %v", buf, err)
	}
}

// TestHelperListener is the listener TestBlockAndRelease runs inside its
// namespace; on its own it does nothing.
func TestHelperListener(t *testing.T) {
	if os.Getenv("CUTOFF_TEST_LISTEN") != "1" {
		return
	}
	l, err := net.Listen("tcp", ":445")
	if err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString("up\n")
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

func reach(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 2e9)
	if err == nil {
		c.Close()
	}
	return err == nil
}
