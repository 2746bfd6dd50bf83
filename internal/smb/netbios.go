package smb

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// MaxFrame bounds one NetBIOS frame. The replies a scan reads are a few
// hundred bytes; a peer announcing more is hostile or broken, and reading it
// would only cost memory.
const MaxFrame = 64 << 10

// NetBIOS session packet types (RFC 1002 §4.3.1).
const (
	nbMessage          = 0x00
	nbSessionRequest   = 0x81
	nbPositiveResponse = 0x82
	nbNegativeResponse = 0x83
	nbRetargetResponse = 0x84
	nbKeepAlive        = 0x85
)

// Errors a caller may want to tell apart.
var (
	// ErrFrameTooLarge: the peer announced a frame beyond MaxFrame.
	ErrFrameTooLarge = errors.New("smb: frame length beyond limit")
	// ErrMalformed: the bytes are not the message they claim to be.
	ErrMalformed = errors.New("smb: malformed message")
)

// Frame prefixes msg with the 4-byte session-message header used on ports
// 445 and 139.
func Frame(msg []byte) []byte {
	out := make([]byte, 4+len(msg))
	binary.BigEndian.PutUint32(out, uint32(len(msg))&0x00FFFFFF)
	copy(out[4:], msg)
	return out
}

// ReadFrame reads one session message and returns its payload. Keep-alive
// frames are skipped. The caller sets the read deadline.
func ReadFrame(r io.Reader) ([]byte, error) {
	for skipped := 0; ; skipped++ {
		var hdr [4]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return nil, err
		}
		n := int(binary.BigEndian.Uint32(hdr[:]) & 0x00FFFFFF)
		if n > MaxFrame {
			return nil, fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, n)
		}
		if hdr[0] == nbKeepAlive && n == 0 && skipped < 8 {
			continue
		}
		if hdr[0] != nbMessage {
			return nil, fmt.Errorf("%w: NetBIOS packet type %#02x where a session message was expected", ErrMalformed, hdr[0])
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		return buf, nil
	}
}

// SessionRequest is the NetBIOS session request that port 139 needs before
// any SMB. "*SMBSERVER" is the called name every Windows and Samba accepts
// when the caller does not know the server's NetBIOS name.
func SessionRequest() []byte {
	called := encodeName("*SMBSERVER", 0x20)
	calling := encodeName("KILLSWITCH", 0x00)
	out := []byte{nbSessionRequest, 0, 0, byte(len(called) + len(calling))}
	out = append(out, called...)
	return append(out, calling...)
}

// encodeName is RFC 1001 first-level encoding: the 16-byte padded name, each
// nibble as a letter from 'A', length-prefixed, with an empty scope.
func encodeName(name string, suffix byte) []byte {
	var raw [16]byte
	for i := range raw[:15] {
		raw[i] = ' '
	}
	copy(raw[:15], name)
	raw[15] = suffix
	out := make([]byte, 0, 34)
	out = append(out, 32)
	for _, b := range raw {
		out = append(out, 'A'+b>>4, 'A'+b&0x0F)
	}
	return append(out, 0)
}

// ReadSessionResponse reads the answer to SessionRequest. A negative
// response carries the server's error code.
func ReadSessionResponse(r io.Reader) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	n := int(binary.BigEndian.Uint32(hdr[:]) & 0x0001FFFF)
	if n > 64 {
		return fmt.Errorf("%w: NetBIOS session response of %d bytes", ErrMalformed, n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return err
	}
	return sessionResponse(hdr[0], body)
}

func sessionResponse(typ byte, body []byte) error {
	switch typ {
	case nbPositiveResponse:
		return nil
	case nbNegativeResponse:
		code := byte(0)
		if len(body) > 0 {
			code = body[0]
		}
		return fmt.Errorf("smb: NetBIOS session refused (error %#02x)", code)
	case nbRetargetResponse:
		return errors.New("smb: NetBIOS session retargeted to another address; not followed")
	}
	return fmt.Errorf("%w: NetBIOS packet type %#02x in answer to a session request", ErrMalformed, typ)
}
