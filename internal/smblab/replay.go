package smblab

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/killswitch-dev/killswitch/internal/smb"
)

// Source names one server in one capture.
type Source struct {
	Pcap   string // path to a classic pcap
	Server string // the server's address in that capture
}

// Replay answers like a Windows host recorded in captures: each request
// gets the recorded reply to the most similar recorded request (same
// command, same parameter-word count, same NTLMSSP message, same TRANS2
// subcommand), with the IDs rewritten for this connection. A request the
// captures never saw answered (an SMB2 NEGOTIATE, say: these captures hold
// none) closes the connection, as an SMB1-only server does.
type Replay struct {
	Name    string
	Implant bool // prefer recorded pings answered with MID+16
	pairs   []Pair
}

// NewReplay loads the request/reply pairs of every source.
func NewReplay(name string, implant bool, sources ...Source) (*Replay, error) {
	r := &Replay{Name: name, Implant: implant}
	for _, s := range sources {
		addr, err := netip.ParseAddr(s.Server)
		if err != nil {
			return nil, err
		}
		conns, err := Exchanges(s.Pcap, addr)
		if err != nil {
			return nil, err
		}
		for _, c := range conns {
			r.pairs = append(r.pairs, c...)
		}
	}
	if len(r.pairs) == 0 {
		return nil, fmt.Errorf("smblab: %s: no SMB exchanges in the sources", name)
	}
	return r, nil
}

// Serve implements Peer.
func (r *Replay) Serve(c net.Conn) {
	s, err := newSession(c)
	if err != nil {
		return
	}
	for {
		req, err := s.read()
		if err != nil {
			return
		}
		rep, err := r.Answer(req)
		if err != nil {
			return
		}
		if s.write(rep) != nil {
			return
		}
	}
}

// Answer returns the reply this host gives to req.
func (r *Replay) Answer(req []byte) ([]byte, error) {
	if !smb.IsSMB1(req) || len(req) < 35 {
		return nil, errNoRecording
	}
	want := kind(req)
	for _, p := range r.pairs {
		if !smb.IsSMB1(p.Request) || !smb.IsSMB1(p.Reply) || kind(p.Request) != want {
			continue
		}
		delta := mid(p.Reply) - mid(p.Request)
		if req[4] == smb.CmdTransaction2 && (delta == 16) != r.Implant {
			continue
		}
		rep := bytes.Clone(p.Reply)
		binary.LittleEndian.PutUint16(rep[26:], binary.LittleEndian.Uint16(req[26:]))
		binary.LittleEndian.PutUint16(rep[30:], mid(req)+delta)
		if req[4] == smb.CmdNegotiate {
			return pointDialect(req, rep), nil
		}
		return rep, nil
	}
	return nil, errNoRecording
}

func mid(m []byte) uint16 { return binary.LittleEndian.Uint16(m[30:]) }

// kind is what makes two requests "the same request" for replay purposes.
func kind(m []byte) string {
	wc := int(m[32])
	k := fmt.Sprintf("%02x/%d", m[4], wc)
	switch {
	case m[4] == smb.CmdSessionSetup:
		if i := bytes.Index(m, []byte("NTLMSSP\x00")); i >= 0 && i+12 <= len(m) {
			k += fmt.Sprintf("/ntlmssp%d", m[i+8])
		}
	case m[4] == smb.CmdTransaction2 && wc >= 15 && len(m) >= 33+30:
		k += fmt.Sprintf("/sub%d", binary.LittleEndian.Uint16(m[33+28:]))
	}
	return k
}

// pointDialect points the recorded reply's dialect index at NT LM 0.12
// in this client's list, or says "none" when the client did not offer it.
func pointDialect(req, rep []byte) []byte {
	m, err := smb.ParseSMB1(req)
	if err != nil || len(rep) < 35 {
		return rep
	}
	idx := -1
	for i, d := range bytes.Split(bytes.TrimSuffix(m.Bytes, []byte{0}), []byte{0}) {
		if bytes.Equal(bytes.TrimPrefix(d, []byte{2}), []byte(smb.DialectNTLM)) {
			idx = i
			break
		}
	}
	if idx < 0 {
		none := bytes.Clone(rep[:32])
		return append(none, 1, 0xFF, 0xFF, 0, 0)
	}
	binary.LittleEndian.PutUint16(rep[33:], uint16(idx))
	return rep
}
