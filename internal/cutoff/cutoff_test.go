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

// Lines as the kernel writes them (from a real /proc/net/tcp and tcp6).
const tcp4 = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100D10A:01BD 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1968964 1 00000000aed37013 100 0 0 10 0
 438: 0100D10A:01BD 0200D10A:AE66 01 00000000:00000000 02:000AFBE4 00000000     0        0 1967540 2 00000000307bbdb2 20 4 5 24 -1
`
const tcp6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0000000000000000FFFF00000100007F:01BD 0000000000000000FFFF00000200007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 20 4 30 10 -1
   1: B80D0120000000000000000001000000:01BD B80D0120000000000000000002000000:D431 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 20 4 30 10 -1
`

func TestParseTCP(t *testing.T) {
	c4, err := ParseTCP([]byte(tcp4))
	if err != nil || len(c4) != 2 {
		t.Fatalf("tcp: %v %v", c4, err)
	}
	want := Conn{Local: netip.MustParseAddrPort("10.209.0.1:445"), Remote: netip.MustParseAddrPort("10.209.0.2:44646"), State: established, Inode: 1967540}
	if c4[1] != want {
		t.Errorf("tcp line 2 = %+v, want %+v", c4[1], want)
	}
	if c4[0].State != 0x0A || c4[0].Remote.Addr() != netip.IPv4Unspecified() {
		t.Errorf("listening socket = %+v", c4[0])
	}
	c6, err := ParseTCP([]byte(tcp6))
	if err != nil || len(c6) != 2 {
		t.Fatalf("tcp6: %v %v", c6, err)
	}
	if got := c6[0].Remote.Addr().Unmap(); got != netip.MustParseAddr("127.0.0.2") {
		t.Errorf("v4-mapped remote = %v", got)
	}
	if got := c6[1].Remote; got != netip.MustParseAddrPort("[2001:db8::2]:54321") {
		t.Errorf("v6 remote = %v", got)
	}
	for _, bad := range []string{"header\n 0: 0100007F:01BD\n", "header\n 0: 0100007:01BD 00000000:0000 0A a b c d e 5\n",
		"header\n 0: 0100007F:XYZ 00000000:0000 0A a b c d e 5\n", "header\n 0: 0100007F:01BD 00000000:0000 0A a b c d e -5\n"} {
		if _, err := ParseTCP([]byte(bad)); err == nil {
			t.Errorf("ParseTCP(%q) accepted", bad)
		}
	}
}

func FuzzParseTCP(f *testing.F) {
	f.Add([]byte(tcp4))
	f.Add([]byte(tcp6))
	f.Fuzz(func(t *testing.T, data []byte) {
		conns, err := ParseTCP(data)
		if err != nil {
			return
		}
		for _, c := range conns {
			if !c.Local.IsValid() || !c.Remote.IsValid() {
				t.Fatalf("accepted an invalid address: %+v", c)
			}
		}
	})
}

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
