package netns

import (
	"net/netip"
	"testing"
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
	want := Conn{Local: netip.MustParseAddrPort("10.209.0.1:445"), Remote: netip.MustParseAddrPort("10.209.0.2:44646"), State: Established, Inode: 1967540}
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
