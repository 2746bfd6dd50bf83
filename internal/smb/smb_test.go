package smb

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// TestPeekNamedPipeLayout checks the MS17-010 probe field by field against
// the layout every public checker uses (nmap, Metasploit, Countercept):
// WordCount 16, parameter and data offsets 74, setup 0x0023 and FID 0,
// the name \PIPE\.
func TestPeekNamedPipeLayout(t *testing.T) {
	m := PeekNamedPipe(IDs{UID: 2049, TID: 2048, MID: 4})
	if len(Frame(m)) != 78 {
		t.Fatalf("framed probe is %d bytes, public checkers send 78", len(Frame(m)))
	}
	p, err := ParseSMB1(m)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	w := p.Words
	switch {
	case p.Command != CmdTransaction || len(w) != 32:
		t.Fatalf("command %#x, %d parameter bytes", p.Command, len(w))
	case le.Uint16(w[4:]) != 0xFFFF || le.Uint16(w[6:]) != 0xFFFF:
		t.Error("max parameter/data counts are not 0xFFFF")
	case le.Uint16(w[20:]) != 74 || le.Uint16(w[24:]) != 74:
		t.Errorf("offsets %d/%d, want 74/74", le.Uint16(w[20:]), le.Uint16(w[24:]))
	case w[26] != 2 || le.Uint16(w[28:]) != 0x0023 || le.Uint16(w[30:]) != 0:
		t.Errorf("setup % x, want count 2, PeekNamedPipe, FID 0", w[26:])
	case !bytes.Equal(p.Bytes, []byte("\\PIPE\\\x00")):
		t.Errorf("name %q", p.Bytes)
	case p.UID != 2049 || p.TID != 2048 || p.MID != 4 || p.PID != ScannerPID:
		t.Errorf("ids uid %d tid %d mid %d pid %#x", p.UID, p.TID, p.MID, p.PID)
	}
	// 74 is where the (empty) parameters start: header, word count, words, byte count, name.
	if off := 32 + 1 + len(w) + 2 + len(p.Bytes); off != 74 {
		t.Errorf("parameters would start at %d, the probe says 74", off)
	}
}

// TestDoublePulsarPingLayout: MID 65, TRANS2 SESSION_SETUP, the ping's
// timeout value (the implant's command 0x23 = ping), nothing else.
func TestDoublePulsarPingLayout(t *testing.T) {
	m := DoublePulsarPing(IDs{UID: 1, TID: 2, MID: 9})
	if len(Frame(m)) != 82 {
		t.Fatalf("framed ping is %d bytes, Countercept's is 82", len(Frame(m)))
	}
	p, err := ParseSMB1(m)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	timeout := le.Uint32(p.Words[12:])
	sum := byte(timeout) + byte(timeout>>8) + byte(timeout>>16) + byte(timeout>>24)
	switch {
	case p.MID != PingMID || p.Command != CmdTransaction2:
		t.Errorf("MID %d command %#x", p.MID, p.Command)
	case sum != 0x23:
		t.Errorf("timeout %#x asks the implant for command %#x; only ping (0x23) may be sent", timeout, sum)
	case le.Uint16(p.Words[28:]) != 0x000E:
		t.Errorf("subcommand %#x", le.Uint16(p.Words[28:]))
	case le.Uint16(p.Words[20:]) != 66 || le.Uint16(p.Words[24:]) != 78:
		t.Errorf("offsets %d/%d", le.Uint16(p.Words[20:]), le.Uint16(p.Words[24:]))
	}
}

func TestSessionSetupCarriesNoCredentials(t *testing.T) {
	p, err := ParseSMB1(SessionSetupAnonymous(IDs{MID: 2}))
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	if le.Uint16(p.Words[14:]) != 1 || le.Uint16(p.Words[16:]) != 0 {
		t.Errorf("password lengths %d/%d, want 1 (a NUL) and 0", le.Uint16(p.Words[14:]), le.Uint16(p.Words[16:]))
	}
	if !bytes.HasPrefix(p.Bytes, []byte{0, 0, 0}) {
		t.Errorf("password, account and domain are not empty: % x", p.Bytes[:3])
	}
	if p.Flags2&0x0800 != 0 {
		t.Error("extended security requested: the session would carry an NTLMSSP blob")
	}
}

func TestNegotiate1OffersOnlyNTLM(t *testing.T) {
	p, err := ParseSMB1(Negotiate1(1))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p.Bytes, []byte("\x02NT LM 0.12\x00")) {
		t.Errorf("dialects %q: only NT LM 0.12 may be offered, or dual-stack servers answer SMB2", p.Bytes)
	}
}

func TestNegotiate2Contexts(t *testing.T) {
	m := Negotiate2(Dialects2)
	le := binary.LittleEndian
	off := le.Uint32(m[64+28:])
	if off%8 != 0 || int(off) >= len(m) || le.Uint16(m[64+32:]) != 2 {
		t.Fatalf("context offset %d count %d", off, le.Uint16(m[64+32:]))
	}
	if le.Uint16(m[off:]) != 1 {
		t.Errorf("first context type %d, want pre-authentication integrity", le.Uint16(m[off:]))
	}
	if n := Negotiate2([]uint16{Dialect210}); len(n) != 64+36+2 {
		t.Errorf("2.1-only negotiate is %d bytes", len(n))
	}
}

func TestPulsarKey(t *testing.T) {
	// Signature1 values from real implant replies (wannacry.pcap, the
	// Shadow Brokers capture) and the keys Metasploit derives from them.
	for sig, want := range map[uint32]uint32{0xA45D4B79: 0x31F1CB56, 0x9B58F121: 0x1740BAD9, 0x36E0103A: 0x57D0C042} {
		if got := pulsarKey(sig); got != want {
			t.Errorf("key(%#x) = %#x, want %#x", sig, got, want)
		}
	}
}

func TestReadFrame(t *testing.T) {
	for name, tc := range map[string]struct {
		in   []byte
		want error
	}{
		"keep-alive then message": {[]byte{0x85, 0, 0, 0, 0, 0, 0, 1, 'x'}, nil},
		"giant":                   {[]byte{0, 0xff, 0xff, 0xff}, ErrFrameTooLarge},
		"truncated":               {[]byte{0, 0, 0, 10, 1, 2}, io.ErrUnexpectedEOF},
		"empty":                   {nil, io.EOF},
		"wrong type":              {[]byte{0x83, 0, 0, 1, 0x80}, ErrMalformed},
	} {
		_, err := ReadFrame(bytes.NewReader(tc.in))
		if !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
}

func TestSessionRequestName(t *testing.T) {
	req := SessionRequest()
	if req[0] != 0x81 || int(req[3]) != len(req)-4 || len(req) != 72 {
		t.Fatalf("% x", req)
	}
	// "*SMBSERVER" first-level encoded: '*' = 0x2A -> "CK", 'S' = 0x53 -> "FD"
	if !bytes.HasPrefix(req[5:], []byte("CKFDENECFDEFFCFGEFFC")) {
		t.Errorf("called name %q", req[5:37])
	}
}

func TestParseNegotiateReplies(t *testing.T) {
	none := make([]byte, 32)
	copy(none, "\xffSMB")
	none[4], none[9] = CmdNegotiate, 0x98
	none = append(none, 1, 0xff, 0xff, 0, 0)
	m, err := ParseSMB1(none)
	if err != nil {
		t.Fatal(err)
	}
	n, err := ParseNegotiate1(m)
	if err != nil || n.DialectIndex != 0xFFFF || n.Full {
		t.Errorf("Samba's 'no dialect' reply: %+v %v", n, err)
	}
	if _, err := ParseSMB1(append(none[:32:32], 17)); err == nil {
		t.Error("word count beyond the message accepted")
	}
}
