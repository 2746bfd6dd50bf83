package smb

import (
	"bytes"
	"testing"
)

// Every reply decoder must return an error, never panic, on any input.

func seeds(f *testing.F) {
	f.Add(Negotiate1(1))
	f.Add(SessionSetupAnonymous(IDs{MID: 2}))
	f.Add(PeekNamedPipe(IDs{UID: 1, TID: 2, MID: 4}))
	f.Add(DoublePulsarPing(IDs{UID: 1, TID: 2}))
	f.Add(Negotiate2(Dialects2))
	f.Add([]byte("\xffSMB"))
	f.Add([]byte("\xfeSMB"))
}

func FuzzParseSMB1(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseSMB1(b)
		if err != nil {
			return
		}
		ParseNegotiate1(m)
		ParsePing(m)
		m.CheckReply(CmdNegotiate, 1)
		os := NativeOS(m)
		for _, r := range os {
			if r < 0x20 {
				t.Fatalf("control character in %q", os)
			}
		}
	})
}

func FuzzParseNegotiate2(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		ParseNegotiate2(b)
	})
}

func FuzzReadFrame(f *testing.F) {
	f.Add(Frame(Negotiate1(1)))
	f.Add([]byte{0x85, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ReadFrame(bytes.NewReader(b))
		if err == nil && len(m) > MaxFrame {
			t.Fatalf("frame of %d bytes", len(m))
		}
		ReadSessionResponse(bytes.NewReader(b))
	})
}
