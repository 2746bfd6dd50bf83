package smb

import (
	"encoding/binary"
	"fmt"
)

// SMB2/3 dialect revisions, lowest first.
const (
	Dialect202 = 0x0202
	Dialect210 = 0x0210
	Dialect300 = 0x0300
	Dialect302 = 0x0302
	Dialect311 = 0x0311
)

// Dialects2 lists every SMB2/3 dialect a scan asks about.
var Dialects2 = []uint16{Dialect202, Dialect210, Dialect300, Dialect302, Dialect311}

// DialectName spells a dialect the way operators read it ("3.1.1").
func DialectName(d uint16) string {
	switch d {
	case Dialect202:
		return "2.0.2"
	case Dialect210:
		return "2.1"
	case Dialect300:
		return "3.0"
	case Dialect302:
		return "3.0.2"
	case Dialect311:
		return "3.1.1"
	}
	return fmt.Sprintf("%#04x", d)
}

const (
	smb2HeaderLen = 64
	// SecurityMode bits in SMB2 NEGOTIATE.
	Signing2Enabled  = 0x01
	Signing2Required = 0x02
)

// clientGUID identifies the scanner in every SMB2 NEGOTIATE ("killswitch scan!").
var clientGUID = []byte("killswitch scan!")

// Negotiate2 offers the given SMB2/3 dialects. When 3.1.1 is among them it
// carries the pre-authentication integrity and encryption contexts that
// 3.1.1 servers require.
func Negotiate2(dialects []uint16) []byte {
	le := binary.LittleEndian
	b := make([]byte, smb2HeaderLen, 256)
	copy(b, "\xfeSMB")
	le.PutUint16(b[4:], smb2HeaderLen)
	le.PutUint16(b[14:], 1) // credits requested
	has311 := false
	for _, d := range dialects {
		has311 = has311 || d == Dialect311
	}
	b = le.AppendUint16(b, 36) // structure size
	b = le.AppendUint16(b, uint16(len(dialects)))
	b = le.AppendUint16(b, Signing2Enabled)
	b = le.AppendUint16(b, 0) // reserved
	b = le.AppendUint32(b, 0) // capabilities
	b = append(b, clientGUID...)
	ctxAt := len(b) // negotiate context offset/count, or client start time
	b = append(b, make([]byte, 8)...)
	for _, d := range dialects {
		b = le.AppendUint16(b, d)
	}
	if has311 {
		for len(b)%8 != 0 {
			b = append(b, 0)
		}
		le.PutUint32(b[ctxAt:], uint32(len(b)))
		le.PutUint16(b[ctxAt+4:], 2)
		// Pre-authentication integrity: SHA-512 with a 32-byte salt.
		b = le.AppendUint16(b, 1)
		b = le.AppendUint16(b, 38)
		b = le.AppendUint32(b, 0)
		b = le.AppendUint16(b, 1)  // hash algorithms
		b = le.AppendUint16(b, 32) // salt length
		b = le.AppendUint16(b, 1)  // SHA-512
		b = append(b, clientGUID...)
		b = append(b, clientGUID...)
		for len(b)%8 != 0 {
			b = append(b, 0)
		}
		// Encryption: AES-128-GCM, AES-128-CCM.
		b = le.AppendUint16(b, 2)
		b = le.AppendUint16(b, 6)
		b = le.AppendUint32(b, 0)
		b = le.AppendUint16(b, 2)
		b = le.AppendUint16(b, 2)
		b = le.AppendUint16(b, 1)
	}
	return b
}

// NegotiateReply2 is what an SMB2 NEGOTIATE reply says.
type NegotiateReply2 struct {
	Status       uint32
	SecurityMode uint16
	Dialect      uint16
}

// ParseNegotiate2 decodes an SMB2 NEGOTIATE reply.
func ParseNegotiate2(b []byte) (NegotiateReply2, error) {
	var r NegotiateReply2
	if !IsSMB2(b) || len(b) < smb2HeaderLen {
		return r, fmt.Errorf("%w: not an SMB2 message", ErrMalformed)
	}
	le := binary.LittleEndian
	if le.Uint16(b[4:]) != smb2HeaderLen {
		return r, fmt.Errorf("%w: SMB2 header size %d", ErrMalformed, le.Uint16(b[4:]))
	}
	r.Status = le.Uint32(b[8:])
	cmd, flags := le.Uint16(b[12:]), le.Uint32(b[16:])
	if cmd != 0 || flags&0x01 == 0 {
		return r, fmt.Errorf("%w: SMB2 command %d flags %#x in reply to NEGOTIATE", ErrMalformed, cmd, flags)
	}
	if msgID := le.Uint64(b[24:]); msgID != 0 {
		return r, fmt.Errorf("%w: SMB2 message ID %d in reply to message 0", ErrMalformed, msgID)
	}
	body := b[smb2HeaderLen:]
	if r.Status != 0 {
		return r, nil // an error reply: 9-byte body, nothing more to read
	}
	if len(body) < 64 || le.Uint16(body) != 65 {
		return r, fmt.Errorf("%w: SMB2 NEGOTIATE reply body of %d bytes", ErrMalformed, len(body))
	}
	r.SecurityMode = le.Uint16(body[2:])
	r.Dialect = le.Uint16(body[4:])
	return r, nil
}
