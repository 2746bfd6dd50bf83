package smblab

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"slices"
	"sync"

	"github.com/killswitch-dev/killswitch/internal/scan"
	"github.com/killswitch-dev/killswitch/internal/smb"
)

// Audit records every byte a scan sends, connection by connection, so a
// test can prove that nothing but the detection sequence left the scanner.
type Audit struct {
	mu    sync.Mutex
	conns []*auditConn
}

type auditConn struct {
	net.Conn
	mu   sync.Mutex
	sent bytes.Buffer
	port string
	host string
}

func (c *auditConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	c.sent.Write(b)
	c.mu.Unlock()
	return c.Conn.Write(b)
}

// Dial wraps the system dialer; pass it as scan.Options.Dial.
func (a *Audit) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	host, port, _ := net.SplitHostPort(address)
	ac := &auditConn{Conn: c, host: host, port: port}
	a.mu.Lock()
	a.conns = append(a.conns, ac)
	a.mu.Unlock()
	return ac, nil
}

var _ scan.DialFunc = (&Audit{}).Dial

// the sequences a connection may carry, by message kind
var allowedSequences = [][]string{
	{"negotiate1"},
	{"negotiate2"},
	{"negotiate1", "session-anonymous", "tree-ipc", "peek-fid0"},
	{"negotiate1", "session-anonymous", "tree-ipc", "doublepulsar-ping"},
}

// Verify checks every connection: each message must be byte for byte one
// the scanner is allowed to send (rebuilt from its IDs), and the messages
// must follow one of the allowed sequences. It returns the number of
// connections and messages checked.
func (a *Audit) Verify() (conns, msgs int, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range a.conns {
		c.mu.Lock()
		b := bytes.Clone(c.sent.Bytes())
		c.mu.Unlock()
		if c.port == "139" {
			req := smb.SessionRequest()
			if !bytes.HasPrefix(b, req) {
				return conns, msgs, fmt.Errorf("to %s:139: does not start with the NetBIOS session request", c.host)
			}
			b = b[len(req):]
		}
		var kinds []string
		rd := bytes.NewReader(b)
		for rd.Len() > 0 {
			m, err := smb.ReadFrame(rd)
			if err != nil {
				return conns, msgs, fmt.Errorf("to %s: unframed bytes: %v", c.host, err)
			}
			kind, err := allowedMessage(m, c.host)
			if err != nil {
				return conns, msgs, fmt.Errorf("to %s: %v", c.host, err)
			}
			kinds = append(kinds, kind)
			msgs++
		}
		ok := false
		for _, seq := range allowedSequences {
			if len(kinds) <= len(seq) && slices.Equal(seq[:len(kinds)], kinds) {
				ok = true
			}
		}
		if !ok {
			return conns, msgs, fmt.Errorf("to %s: sequence %v is not allowed", c.host, kinds)
		}
		conns++
	}
	return conns, msgs, nil
}

// allowedMessage names m if it is exactly one of the detection requests.
func allowedMessage(m []byte, host string) (string, error) {
	if smb.IsSMB2(m) {
		if bytes.Equal(m, smb.Negotiate2(smb.Dialects2)) {
			return "negotiate2", nil
		}
		for _, d := range smb.Dialects2 {
			if bytes.Equal(m, smb.Negotiate2([]uint16{d})) {
				return "negotiate2", nil
			}
		}
		return "", fmt.Errorf("an SMB2 message that is not an allowed NEGOTIATE: % x", m)
	}
	if !smb.IsSMB1(m) || len(m) < 32 {
		return "", fmt.Errorf("neither SMB1 nor SMB2: % x", m[:min(len(m), 16)])
	}
	le := binary.LittleEndian
	ids := smb.IDs{TID: le.Uint16(m[24:]), UID: le.Uint16(m[28:]), MID: le.Uint16(m[30:])}
	candidates := map[string][]byte{
		"negotiate1":        smb.Negotiate1(ids.MID),
		"session-anonymous": smb.SessionSetupAnonymous(ids),
		"tree-ipc":          smb.TreeConnectIPC(ids, host),
		"peek-fid0":         smb.PeekNamedPipe(ids),
		"doublepulsar-ping": smb.DoublePulsarPing(ids),
	}
	for kind, want := range candidates {
		if bytes.Equal(m, want) {
			return kind, nil
		}
	}
	return "", fmt.Errorf("SMB1 command %#02x is not an allowed request: % x", m[4], m)
}
