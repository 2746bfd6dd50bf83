package smblab

import (
	"bufio"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/killswitch-dev/killswitch/internal/smb"
)

// Peer answers one accepted connection.
type Peer interface {
	Serve(c net.Conn)
}

// PeerFunc adapts a function to Peer.
type PeerFunc func(c net.Conn)

func (f PeerFunc) Serve(c net.Conn) { f(c) }

// Server runs a peer on one or more loopback addresses and ports.
type Server struct {
	mu        sync.Mutex
	listeners []net.Listener
	conns     map[net.Conn]struct{}
	wg        sync.WaitGroup
	closed    bool
}

// NewServer returns a server with nothing listening yet.
func NewServer() *Server { return &Server{conns: map[net.Conn]struct{}{}} }

// Listen serves p on addr:port (port 0: any free port) and returns the
// address it listens on.
func (s *Server) Listen(addr netip.Addr, port int, p Peer) (netip.AddrPort, error) {
	l, err := net.Listen("tcp", netip.AddrPortFrom(addr, uint16(port)).String())
	if err != nil {
		return netip.AddrPort{}, err
	}
	s.mu.Lock()
	s.listeners = append(s.listeners, l)
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			if s.closed {
				s.mu.Unlock()
				c.Close()
				return
			}
			s.conns[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() {
					s.mu.Lock()
					delete(s.conns, c)
					s.mu.Unlock()
					c.Close()
				}()
				p.Serve(c)
			}()
		}
	}()
	return l.Addr().(*net.TCPAddr).AddrPort(), nil
}

// Close stops every listener and connection and waits for the peers.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	for _, l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// session wraps a connection the way an SMB server reads it: a NetBIOS
// session request is answered first when the client sends one (port 139).
type session struct {
	c  net.Conn
	rd *bufio.Reader
}

func newSession(c net.Conn) (*session, error) {
	s := &session{c: c, rd: bufio.NewReader(c)}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	first, err := s.rd.Peek(1)
	if err != nil {
		return nil, err
	}
	if first[0] == 0x81 {
		hdr := make([]byte, 4)
		if _, err := s.rd.Read(hdr); err != nil {
			return nil, err
		}
		if _, err := s.rd.Discard(int(hdr[3])); err != nil {
			return nil, err
		}
		if _, err := c.Write([]byte{0x82, 0, 0, 0}); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *session) read() ([]byte, error) { return smb.ReadFrame(s.rd) }

func (s *session) write(msg []byte) error {
	_, err := s.c.Write(smb.Frame(msg))
	return err
}

// reset closes c with a TCP RST instead of a FIN.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

var errNoRecording = errors.New("smblab: no recorded reply for this request")
