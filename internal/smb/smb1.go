package smb

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"unicode/utf16"
)

// SMB1 commands used by the checks.
const (
	CmdNegotiate    = 0x72
	CmdSessionSetup = 0x73
	CmdTreeConnect  = 0x75
	CmdTransaction  = 0x25
	CmdTransaction2 = 0x32
)

const (
	smb1HeaderLen = 32
	flagsReply    = 0x80
	// Case-insensitive paths, canonicalized names: what every client sends.
	requestFlags = 0x18
	// NT status codes (not DOS errors) and long names; ASCII strings, no
	// extended security, so the anonymous session stays credential-free.
	requestFlags2 = 0x4001
	flags2Unicode = 0x8000
	// ScannerPID marks the scanner's requests, so that a capture or an IDS
	// can tell them apart from a worm's (WannaCry used 0xFEFF and 0x4B2F).
	ScannerPID = 0x4B53 // "KS"
	// DialectNTLM is the one SMB1 dialect offered, and the only one that
	// counts as SMBv1 being on: no SMB2 dialect is offered next to it, so a
	// server that speaks both cannot answer SMB2 and hide SMBv1.
	DialectNTLM = "NT LM 0.12"
	// PingMID is the multiplex ID of the DoublePulsar ping; an implant
	// answers with PingMID+16.
	PingMID = 65
	// pingTimeout is the ping's "timeout" field, which DoublePulsar reads as
	// its command: the byte sum 0x23 is ping, the only command ever sent.
	pingTimeout = 0x00A4D9A6
)

// Header1 is the 32-byte SMB1 header.
type Header1 struct {
	Command   byte
	Status    uint32
	Flags     byte
	Flags2    uint16
	PIDHigh   uint16
	Signature [8]byte
	TID       uint16
	PID       uint16
	UID       uint16
	MID       uint16
}

// Msg1 is one decoded SMB1 message: header, parameter words, data bytes.
type Msg1 struct {
	Header1
	Words []byte
	Bytes []byte
}

// IDs are the per-connection identifiers a request carries.
type IDs struct {
	UID, TID, MID uint16
}

// IsSMB1 and IsSMB2 tell a reply's protocol from its first four bytes.
func IsSMB1(b []byte) bool { return len(b) >= 4 && bytes.Equal(b[:4], []byte("\xffSMB")) }
func IsSMB2(b []byte) bool { return len(b) >= 4 && bytes.Equal(b[:4], []byte("\xfeSMB")) }

// ParseSMB1 decodes one SMB1 message and checks that its word and byte
// counts fit inside it.
func ParseSMB1(b []byte) (Msg1, error) {
	var m Msg1
	if !IsSMB1(b) {
		return m, fmt.Errorf("%w: not an SMB1 message", ErrMalformed)
	}
	if len(b) < smb1HeaderLen+1 {
		return m, fmt.Errorf("%w: SMB1 message of %d bytes", ErrMalformed, len(b))
	}
	le := binary.LittleEndian
	m.Command = b[4]
	m.Status = le.Uint32(b[5:])
	m.Flags = b[9]
	m.Flags2 = le.Uint16(b[10:])
	m.PIDHigh = le.Uint16(b[12:])
	copy(m.Signature[:], b[14:22])
	m.TID = le.Uint16(b[24:])
	m.PID = le.Uint16(b[26:])
	m.UID = le.Uint16(b[28:])
	m.MID = le.Uint16(b[30:])
	wc := int(b[32])
	end := smb1HeaderLen + 1 + 2*wc
	if end+2 > len(b) {
		return m, fmt.Errorf("%w: word count %d beyond a %d-byte message", ErrMalformed, wc, len(b))
	}
	m.Words = b[smb1HeaderLen+1 : end]
	bc := int(le.Uint16(b[end:]))
	if end+2+bc > len(b) {
		return m, fmt.Errorf("%w: byte count %d beyond a %d-byte message", ErrMalformed, bc, len(b))
	}
	m.Bytes = b[end+2 : end+2+bc]
	return m, nil
}

// CheckReply verifies that m answers a request with this command and MID.
func (m Msg1) CheckReply(cmd byte, mid uint16) error {
	switch {
	case m.Flags&flagsReply == 0:
		return fmt.Errorf("%w: reply flag not set", ErrMalformed)
	case m.Command != cmd:
		return fmt.Errorf("%w: command %#02x in reply to %#02x", ErrMalformed, m.Command, cmd)
	case m.MID != mid:
		return fmt.Errorf("%w: MID %d in reply to MID %d", ErrMalformed, m.MID, mid)
	}
	return nil
}

// smb1 builds one request: header, parameter words, data bytes.
func smb1(cmd byte, flags2 uint16, ids IDs, words, data []byte) []byte {
	le := binary.LittleEndian
	b := make([]byte, smb1HeaderLen, smb1HeaderLen+3+len(words)+len(data))
	copy(b, "\xffSMB")
	b[4] = cmd
	b[9] = requestFlags
	le.PutUint16(b[10:], flags2)
	le.PutUint16(b[24:], ids.TID)
	le.PutUint16(b[26:], ScannerPID)
	le.PutUint16(b[28:], ids.UID)
	le.PutUint16(b[30:], ids.MID)
	b = append(b, byte(len(words)/2))
	b = append(b, words...)
	b = le.AppendUint16(b, uint16(len(data)))
	return append(b, data...)
}

// Negotiate1 offers SMB1's NT LM 0.12 alone.
func Negotiate1(mid uint16) []byte {
	data := append([]byte{0x02}, DialectNTLM...)
	data = append(data, 0)
	return smb1(CmdNegotiate, requestFlags2, IDs{MID: mid}, nil, data)
}

// NegotiateReply1 is what an SMB1 NEGOTIATE reply says.
type NegotiateReply1 struct {
	DialectIndex uint16
	// SecurityMode: 0x04 signing enabled, 0x08 signing required.
	SecurityMode byte
	Capabilities uint32
	// Full is false for the one-word "no dialect acceptable" reply.
	Full bool
}

// ParseNegotiate1 decodes a NEGOTIATE reply's parameter words.
func ParseNegotiate1(m Msg1) (NegotiateReply1, error) {
	var r NegotiateReply1
	le := binary.LittleEndian
	switch len(m.Words) {
	case 2: // "none of your dialects", DialectIndex 0xFFFF
		r.DialectIndex = le.Uint16(m.Words)
	case 34: // NT LM 0.12
		r.DialectIndex = le.Uint16(m.Words)
		r.SecurityMode = m.Words[2]
		r.Capabilities = le.Uint32(m.Words[19:])
		r.Full = true
	default:
		return r, fmt.Errorf("%w: NEGOTIATE reply with %d parameter words", ErrMalformed, len(m.Words)/2)
	}
	return r, nil
}

// SessionSetupAnonymous is a null session: empty account, empty domain, no
// password. It proves nothing about the server but that it accepts
// anonymous callers, and changes nothing on it.
func SessionSetupAnonymous(ids IDs) []byte {
	le := binary.LittleEndian
	w := make([]byte, 0, 26)
	w = append(w, 0xFF, 0)       // no AndX command
	w = le.AppendUint16(w, 0)    // AndX offset
	w = le.AppendUint16(w, 4356) // max buffer
	w = le.AppendUint16(w, 2)    // max multiplex
	w = le.AppendUint16(w, 0)    // VC number
	w = le.AppendUint32(w, 0)    // session key
	w = le.AppendUint16(w, 1)    // ANSI password: one NUL byte
	w = le.AppendUint16(w, 0)    // Unicode password: none
	w = le.AppendUint32(w, 0)    // reserved
	w = le.AppendUint32(w, 0x50) // capabilities: NT status, NT SMBs
	data := []byte{0, 0, 0}      // password, account "", domain ""
	data = append(data, "killswitch scan\x00killswitch\x00"...)
	return smb1(CmdSessionSetup, requestFlags2, ids, w, data)
}

// NativeOS returns the operating system a SESSION_SETUP reply names, or "".
func NativeOS(m Msg1) string {
	b := m.Bytes
	if m.Flags2&flags2Unicode != 0 {
		// Unicode strings are 2-byte aligned from the header start; the
		// data starts at an odd offset when the word count is odd... and
		// servers pad so that the string is aligned.
		off := smb1HeaderLen + 1 + len(m.Words) + 2
		if off%2 == 1 && len(b) > 0 {
			b = b[1:]
		}
		var u []uint16
		for i := 0; i+1 < len(b) && len(u) < 256; i += 2 {
			c := binary.LittleEndian.Uint16(b[i:])
			if c == 0 {
				break
			}
			u = append(u, c)
		}
		return printable(string(utf16.Decode(u)))
	}
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	if len(b) > 256 {
		b = b[:256]
	}
	return printable(string(b))
}

// printable drops control characters so that a hostile name cannot paint
// the operator's terminal.
func printable(s string) string {
	return string(bytes.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			return -1
		}
		return r
	}, []byte(s)))
}

// TreeConnectIPC connects to \\host\IPC$, the share every SMB server has.
func TreeConnectIPC(ids IDs, host string) []byte {
	le := binary.LittleEndian
	w := []byte{0xFF, 0}
	w = le.AppendUint16(w, 0) // AndX offset
	w = le.AppendUint16(w, 0) // flags
	w = le.AppendUint16(w, 1) // password length: one NUL
	data := []byte{0}
	data = append(data, `\\`+host+`\IPC$`...)
	data = append(data, 0)
	data = append(data, "?????\x00"...)
	return smb1(CmdTreeConnect, requestFlags2, ids, w, data)
}

// PeekNamedPipe is the MS17-010 check: a PeekNamedPipe transaction on FID
// 0. An unpatched server answers STATUS_INSUFF_SERVER_RESOURCES; a patched
// one STATUS_ACCESS_DENIED or STATUS_INVALID_HANDLE.
func PeekNamedPipe(ids IDs) []byte {
	le := binary.LittleEndian
	w := make([]byte, 0, 32)
	w = le.AppendUint16(w, 0)      // total parameter count
	w = le.AppendUint16(w, 0)      // total data count
	w = le.AppendUint16(w, 0xFFFF) // max parameter count
	w = le.AppendUint16(w, 0xFFFF) // max data count
	w = append(w, 0, 0)            // max setup count, reserved
	w = le.AppendUint16(w, 0)      // flags
	w = le.AppendUint32(w, 0)      // timeout
	w = le.AppendUint16(w, 0)      // reserved
	w = le.AppendUint16(w, 0)      // parameter count
	w = le.AppendUint16(w, 74)     // parameter offset
	w = le.AppendUint16(w, 0)      // data count
	w = le.AppendUint16(w, 74)     // data offset
	w = append(w, 2, 0)            // setup count, reserved
	w = le.AppendUint16(w, 0x0023) // PeekNamedPipe
	w = le.AppendUint16(w, 0)      // FID 0
	return smb1(CmdTransaction, requestFlags2, ids, w, []byte("\\PIPE\\\x00"))
}

// DoublePulsarPing is the implant check: TRANS2 SESSION_SETUP with MID 65.
// The implant answers with MID 81; a clean server with MID 65 and an error.
func DoublePulsarPing(ids IDs) []byte {
	le := binary.LittleEndian
	ids.MID = PingMID
	w := make([]byte, 0, 30)
	w = le.AppendUint16(w, 12)          // total parameter count
	w = le.AppendUint16(w, 0)           // total data count
	w = le.AppendUint16(w, 1)           // max parameter count
	w = le.AppendUint16(w, 0)           // max data count
	w = append(w, 0, 0)                 // max setup count, reserved
	w = le.AppendUint16(w, 0)           // flags
	w = le.AppendUint32(w, pingTimeout) // the implant's command: ping
	w = le.AppendUint16(w, 0)           // reserved
	w = le.AppendUint16(w, 12)          // parameter count
	w = le.AppendUint16(w, 66)          // parameter offset
	w = le.AppendUint16(w, 0)           // data count
	w = le.AppendUint16(w, 78)          // data offset
	w = append(w, 1, 0)                 // setup count, reserved
	w = le.AppendUint16(w, 0x000E)      // TRANS2_SESSION_SETUP
	return smb1(CmdTransaction2, requestFlags2, ids, w, make([]byte, 13))
}

// Implant is what a DoublePulsar ping reply reveals.
type Implant struct {
	Present bool
	Arch    string // "x86" or "x64", when present
	Key     uint32 // the XOR key the implant expects, when present
}

// ParsePing classifies a reply to DoublePulsarPing. Only MID 65 (clean) and
// 81 (implant) are answers; anything else is an error.
func ParsePing(m Msg1) (Implant, error) {
	if m.Flags&flagsReply == 0 || m.Command != CmdTransaction2 {
		return Implant{}, fmt.Errorf("%w: command %#02x flags %#02x in reply to the DoublePulsar ping", ErrMalformed, m.Command, m.Flags)
	}
	switch m.MID {
	case PingMID:
		return Implant{}, nil
	case PingMID + 16:
		sig1 := binary.LittleEndian.Uint32(m.Signature[0:])
		sig2 := binary.LittleEndian.Uint32(m.Signature[4:])
		arch := "x86"
		if sig2 != 0 {
			arch = "x64"
		}
		return Implant{Present: true, Arch: arch, Key: pulsarKey(sig1)}, nil
	}
	return Implant{}, fmt.Errorf("%w: MID %d in reply to the DoublePulsar ping (MID %d)", ErrMalformed, m.MID, PingMID)
}

// pulsarKey derives the implant's XOR key from the first half of the reply
// signature (zerosum0x0's formula, as in Metasploit's smb_ms17_010).
func pulsarKey(s uint32) uint32 {
	x := uint64(s)
	return uint32(2*x ^ ((((x & 0xff00) | (x << 16)) << 8) | (((x >> 16) | (x & 0xff0000)) >> 8)))
}
