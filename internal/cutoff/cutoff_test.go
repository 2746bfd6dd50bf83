package cutoff

import (
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"testing"

	"github.com/killswitch-dev/killswitch/internal/testenv"
)

func FuzzParseSet(f *testing.F) {
	f.Add([]byte(`{"nftables": [{"metainfo": {}}, {"set": {"family": "inet", "name": "clients4", "elem": ["10.209.0.1", "10.0.0.7"]}}]}`))
	f.Add([]byte(`{"nftables": [{"set": {"elem": [{"prefix": {}}]}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		addrs, err := parseSet(data)
		if err != nil {
			return
		}
		for _, a := range addrs {
			if !a.IsValid() {
				t.Fatalf("accepted an invalid address")
			}
		}
	})
}

// TestPeer: the remote address of a real connection to a file-sharing
// port, found from this process's own sockets.
func TestPeer(t *testing.T) {
	l, err := net.Listen("tcp", "127.77.0.1:445")
	if err != nil {
		testenv.Skip(t, "cannot listen on port 445: "+err.Error())
	}
	defer l.Close()
	if _, err := Peer("/proc", os.Getpid()); err == nil {
		t.Fatal("a listening socket was taken for a client")
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.77.0.2")}}
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
	got, err := Peer("/proc", os.Getpid())
	if err != nil || got != netip.MustParseAddr("127.77.0.2") {
		t.Fatalf("Peer = %v, %v; want 127.77.0.2", got, err)
	}
	self, _ := os.Executable()
	if pids := Serving("/proc", self, got); !slices.Contains(pids, os.Getpid()) {
		t.Errorf("Serving = %v, want this process", pids)
	}
}

// TestBlockAndRelease runs the real nftables rules inside a namespace of
// the test's own: a client cut off cannot connect to port 445, another
// can, and release lets it back.
func TestBlockAndRelease(t *testing.T) {
	testenv.RequireTool(t, "nft")
	ns := testenv.Netns(t, 202, 203)
	nftArgv := []string{"ip", "netns", "exec", ns, "nft"}
	// A listener on 445 inside the namespace: this test binary again.
	ln := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestHelperListener$")
	ln.Env = append(os.Environ(), "CUTOFF_TEST_LISTEN=1")
	out, _ := ln.StdoutPipe()
	if err := ln.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { ln.Process.Kill(); ln.Wait() }()
	buf := make([]byte, 3)
	if _, err := io.ReadFull(out, buf); err != nil || string(buf) != "up\n" {
		t.Fatalf("listener in the namespace: %q %v", buf, err)
	}
	ctx := context.Background()
	if l, err := List(ctx, nftArgv); err != nil || len(l) != 0 {
		t.Fatalf("List before any cut-off = %v, %v", l, err)
	}
	cut := netip.MustParseAddr("10.202.0.1")
	for range 2 { // twice: blocking again must not add rules or fail
		if err := Block(ctx, nftArgv, cut); err != nil {
			t.Fatal(err)
		}
	}
	if l, err := List(ctx, nftArgv); err != nil || !slices.Equal(l, []netip.Addr{cut}) {
		t.Fatalf("List = %v, %v; want [%v]", l, err, cut)
	}
	if reach("10.202.0.2:445") {
		t.Error("the cut-off client still connects")
	}
	if !reach("10.203.0.2:445") {
		t.Error("another client was cut off too")
	}
	if err := Release(ctx, nftArgv, cut); err != nil {
		t.Fatal(err)
	}
	if !reach("10.202.0.2:445") {
		t.Error("the released client cannot connect")
	}
	if err := Release(ctx, nftArgv, cut); err == nil {
		t.Error("releasing an address that is not cut off succeeded")
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
