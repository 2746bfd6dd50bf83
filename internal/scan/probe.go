package scan

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/killswitch-dev/killswitch/internal/smb"
)

// DialFunc opens a TCP connection (net.Dialer.DialContext's shape).
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// Prober runs the checks against one host and port. It is safe for
// concurrent use: it holds configuration only.
type Prober struct {
	// Timeout bounds each connect and each request/reply exchange.
	Timeout time.Duration
	// Dial opens connections; nil means a plain net.Dialer.
	Dial DialFunc
	// Retries is how many more times a check is run, on a new connection,
	// when a server that accepted the connection did not answer in time
	// (an overloaded server is not a silent one).
	Retries int
}

// again reports whether a check that ended with reason should run again.
func (p *Prober) again(ctx context.Context, attempt int, reason Reason) bool {
	return reason == ReasonNoReply && attempt < p.Retries && ctx.Err() == nil
}

// conn is one probe connection. Each exchange has its own deadline, so a
// server that trickles bytes (slowloris) costs one time-out, not more.
type conn struct {
	net.Conn
	timeout time.Duration
	got     int // bytes read in the current exchange
	stop    func() bool
}

func (c *conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.got += n
	return n, err
}

func (c *conn) Close() error {
	c.stop()
	return c.Conn.Close()
}

func (c *conn) exchange(req []byte) ([]byte, error) {
	c.got = 0
	if err := c.SetDeadline(time.Now().Add(c.timeout)); err != nil {
		return nil, err
	}
	if _, err := c.Write(smb.Frame(req)); err != nil {
		return nil, err
	}
	return smb.ReadFrame(c)
}

// dial connects, waiting for the rate limits first, and on port 139 opens
// the NetBIOS session.
func (p *Prober) dial(ctx context.Context, addr netip.Addr, port int, wait func(context.Context) error) (*conn, PortState, error) {
	if wait != nil {
		if err := wait(ctx); err != nil {
			return nil, "", err
		}
	}
	dctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	dial := p.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	nc, err := dial(dctx, "tcp", net.JoinHostPort(addr.String(), strconv.Itoa(port)))
	if err != nil {
		if ctx.Err() != nil {
			return nil, "", ctx.Err()
		}
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			return nil, PortClosed, err
		case errors.Is(err, syscall.ECONNRESET):
			// Accepted, then reset before connect() returned: the port is
			// open and the server hung up at once, as it may after any
			// request it refuses.
			return nil, PortOpen, err
		}
		return nil, PortFiltered, err
	}
	c := &conn{Conn: nc, timeout: p.Timeout}
	c.stop = context.AfterFunc(ctx, func() { nc.Close() }) // Ctrl-C ends every exchange at once
	if port == 139 {
		nc.SetDeadline(time.Now().Add(p.Timeout))
		if _, err = nc.Write(smb.SessionRequest()); err == nil {
			err = smb.ReadSessionResponse(c)
		}
		if err != nil {
			c.Close()
			return nil, PortOpen, netbiosError{err}
		}
	}
	return c, PortOpen, nil
}

type netbiosError struct{ error }

func (e netbiosError) Unwrap() error { return e.error }

// classify turns a failed exchange into a reason.
func classify(ctx context.Context, err error) Reason {
	var ne net.Error
	var nb netbiosError
	switch {
	case ctx.Err() != nil:
		return ReasonInterrupted
	case errors.As(err, &nb) && !errors.As(nb.error, &ne) && !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET):
		return ReasonNetBIOSRefused
	case errors.As(err, &ne) && ne.Timeout():
		return ReasonNoReply
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return ReasonConnectionReset
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return ReasonConnectionClosed
	}
	return ReasonProtocolError
}

// Probe runs every check against addr:port. wait is called before each new
// connection (the rate limits); it may be nil.
func (p *Prober) Probe(ctx context.Context, addr netip.Addr, port int, wait func(context.Context) error) (r Result) {
	start := time.Now()
	r = Result{IP: addr, Port: port, Time: start.UTC(), Dialects: []string{}}
	defer func() { r.Duration = float64(time.Since(start).Microseconds()) / 1000 }()
	note := func(err error) {
		if err != nil && r.Detail == "" {
			r.Detail = err.Error()
		}
	}

	// 1. SMBv1 offered alone, on the connection that also tells the port state.
	c, state, err := p.dial(ctx, addr, port, wait)
	if err != nil && state == "" {
		r.State, r.MS17010, r.MS17010Reason, r.SMB1Reason = PortFiltered, MS17Unknown, ReasonInterrupted, ReasonInterrupted
		return r
	}
	r.State = state
	switch state {
	case PortClosed:
		r.MS17010, r.MS17010Reason = MS17NotApplicable, ReasonPortClosed
		return r
	case PortFiltered:
		r.MS17010, r.MS17010Reason = MS17Unknown, ReasonPortFiltered
		note(err)
		return r
	}
	if err != nil && errors.Is(err, syscall.ECONNRESET) && !errors.As(err, new(netbiosError)) {
		// reset before a byte was exchanged: the same answer as a reset to the negotiate
		r.SMB1, r.SMB1Reason = ptr(false), ReasonSMB1RefusedSilent
		r.MS17010, r.MS17010Reason, r.DoublePulsarReason = MS17NotApplicable, ReasonSMB1Disabled, ReasonSMB1Disabled
		return r
	}
	if err != nil { // port 139 without a NetBIOS session
		note(err)
		reason := classify(ctx, err)
		r.SMB1Reason, r.MS17010, r.MS17010Reason, r.DoublePulsarReason = reason, MS17Unknown, reason, reason
		return r
	}
	r.SMB1, r.SMB1Reason, r.SMB1Signing, err = smb1Negotiate(ctx, c)
	c.Close()
	for attempt := 0; p.again(ctx, attempt, r.SMB1Reason); attempt++ {
		if c, _, err = p.dial(ctx, addr, port, wait); err == nil {
			r.SMB1, r.SMB1Reason, r.SMB1Signing, err = smb1Negotiate(ctx, c)
			c.Close()
		}
	}
	note(err)
	if r.SMB1 != nil && *r.SMB1 {
		r.Dialects = append(r.Dialects, smb.DialectNTLM)
	}

	// 2. SMB2/3: the highest dialect, then each lower one alone.
	dialects, signing2, err := p.smb2Dialects(ctx, addr, port, wait)
	note(err)
	for _, d := range dialects {
		r.Dialects = append(r.Dialects, smb.DialectName(d))
	}
	r.SMB2Signing = signing2
	r.Signing = weakest(r.SMB1Signing, r.SMB2Signing)

	switch {
	case r.SMB1 == nil:
		r.MS17010, r.MS17010Reason, r.DoublePulsarReason = MS17Unknown, ReasonSMB1Unknown, ReasonSMB1Unknown
		return r
	case !*r.SMB1:
		r.MS17010, r.MS17010Reason, r.DoublePulsarReason = MS17NotApplicable, ReasonSMB1Disabled, ReasonSMB1Disabled
		return r
	}

	// 3. MS17-010: PeekNamedPipe on FID 0 over an anonymous IPC$ session.
	var status uint32
	r.MS17010, r.MS17010Reason, status, r.OS, err = p.ms17(ctx, addr, port, wait)
	for attempt := 0; p.again(ctx, attempt, r.MS17010Reason); attempt++ {
		r.MS17010, r.MS17010Reason, status, r.OS, err = p.ms17(ctx, addr, port, wait)
	}
	note(err)
	if status != 0 || r.MS17010Reason == ReasonAnonymousRefused || r.MS17010Reason == ReasonIPCRefused || r.MS17010 != MS17Unknown {
		r.MS17010Status = smb.StatusName(status)
	}

	// 4. DoublePulsar ping.
	var imp smb.Implant
	imp, r.DoublePulsarReason, err = p.pulsar(ctx, addr, port, wait)
	for attempt := 0; p.again(ctx, attempt, r.DoublePulsarReason); attempt++ {
		imp, r.DoublePulsarReason, err = p.pulsar(ctx, addr, port, wait)
	}
	note(err)
	if r.DoublePulsarReason == ReasonImplantAnswered || r.DoublePulsarReason == ReasonNoImplant {
		r.DoublePulsar = ptr(imp.Present)
		if imp.Present {
			r.DoublePulsarArch, r.DoublePulsarKey = imp.Arch, fmt.Sprintf("0x%08X", imp.Key)
		}
	}
	return r
}

// smb1Negotiate decides whether SMBv1 is on. A server that closes or resets
// the connection without a byte is how Windows refuses SMBv1; a time-out
// or a garbled answer leaves it unknown.
func smb1Negotiate(ctx context.Context, c *conn) (*bool, Reason, *Signing, error) {
	const mid = 1
	rep, err := c.exchange(smb.Negotiate1(mid))
	if err != nil {
		reason := classify(ctx, err)
		if c.got == 0 && (reason == ReasonConnectionClosed || reason == ReasonConnectionReset) {
			return ptr(false), ReasonSMB1RefusedSilent, nil, nil
		}
		return nil, reason, nil, err
	}
	if smb.IsSMB2(rep) {
		return ptr(false), ReasonSMB2Reply, nil, nil
	}
	m, err := smb.ParseSMB1(rep)
	if err == nil {
		err = m.CheckReply(smb.CmdNegotiate, mid)
	}
	if err != nil {
		return nil, ReasonProtocolError, nil, err
	}
	if m.Status != smb.StatusSuccess {
		return ptr(false), ReasonSMB1NoDialect, nil, nil
	}
	n, err := smb.ParseNegotiate1(m)
	switch {
	case err != nil:
		return nil, ReasonProtocolError, nil, err
	case n.DialectIndex == 0xFFFF:
		return ptr(false), ReasonSMB1NoDialect, nil, nil
	case n.DialectIndex != 0 || !n.Full:
		return nil, ReasonProtocolError, nil, fmt.Errorf("%w: dialect index %d, only 0 was offered", smb.ErrMalformed, n.DialectIndex)
	}
	s := SigningDisabled
	switch {
	case n.SecurityMode&0x08 != 0:
		s = SigningRequired
	case n.SecurityMode&0x04 != 0:
		s = SigningEnabled
	}
	return ptr(true), ReasonSMB1Accepted, &s, nil
}

// negotiate2 offers dialects on a fresh connection and returns the reply,
// or nil when the server does not answer in SMB2.
func (p *Prober) negotiate2(ctx context.Context, addr netip.Addr, port int, wait func(context.Context) error, dialects []uint16) (n *smb.NegotiateReply2, err error) {
	for attempt := 0; ; attempt++ {
		n, err = p.negotiate2Once(ctx, addr, port, wait, dialects)
		if err == nil || !p.again(ctx, attempt, classify(ctx, err)) {
			return n, err
		}
	}
}

func (p *Prober) negotiate2Once(ctx context.Context, addr netip.Addr, port int, wait func(context.Context) error, dialects []uint16) (*smb.NegotiateReply2, error) {
	c, _, err := p.dial(ctx, addr, port, wait)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	rep, err := c.exchange(smb.Negotiate2(dialects))
	if err != nil {
		return nil, err
	}
	n, err := smb.ParseNegotiate2(rep)
	if err != nil {
		return nil, err
	}
	return &n, nil
}

func (p *Prober) smb2Dialects(ctx context.Context, addr netip.Addr, port int, wait func(context.Context) error) ([]uint16, *Signing, error) {
	top, err := p.negotiate2(ctx, addr, port, wait, smb.Dialects2)
	if err != nil || top.Status != smb.StatusSuccess {
		if c := classify(ctx, err); err != nil && (c == ReasonConnectionClosed || c == ReasonConnectionReset) {
			err = nil // no SMB2 here: a normal answer from an SMB1-only server
		}
		return nil, nil, err
	}
	if !slices.Contains(smb.Dialects2, top.Dialect) {
		return nil, nil, fmt.Errorf("%w: SMB2 dialect %#04x was not offered", smb.ErrMalformed, top.Dialect)
	}
	s := SigningDisabled
	switch {
	case top.SecurityMode&smb.Signing2Required != 0:
		s = SigningRequired
	case top.SecurityMode&smb.Signing2Enabled != 0:
		s = SigningEnabled
	}
	var out []uint16
	var firstErr error
	for _, d := range smb.Dialects2 {
		if d >= top.Dialect {
			break
		}
		n, err := p.negotiate2(ctx, addr, port, wait, []uint16{d})
		if err == nil && n.Status == smb.StatusSuccess && n.Dialect == d {
			out = append(out, d)
		} else if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return append(out, top.Dialect), &s, firstErr
}

// ipcSession opens a connection and goes through NEGOTIATE, an anonymous
// SESSION_SETUP and a TREE_CONNECT to IPC$. On refusal it returns the
// reason and the status that refused.
func (p *Prober) ipcSession(ctx context.Context, addr netip.Addr, port int, wait func(context.Context) error) (c *conn, ids smb.IDs, os string, reason Reason, status uint32, err error) {
	c, _, err = p.dial(ctx, addr, port, wait)
	if err != nil {
		return nil, ids, "", classify(ctx, err), 0, err
	}
	fail := func(r Reason, st uint32, e error) (*conn, smb.IDs, string, Reason, uint32, error) {
		c.Close()
		if e != nil && r == "" {
			r = classify(ctx, e)
		}
		return nil, ids, os, r, st, e
	}
	step := func(req []byte, cmd byte, mid uint16, checkTID bool) (smb.Msg1, error) {
		rep, err := c.exchange(req)
		if err != nil {
			return smb.Msg1{}, err
		}
		m, err := smb.ParseSMB1(rep)
		if err != nil {
			return m, err
		}
		if err := m.CheckReply(cmd, mid); err != nil {
			return m, err
		}
		if checkTID && m.TID != ids.TID {
			return m, fmt.Errorf("%w: TID %d in reply to TID %d", smb.ErrMalformed, m.TID, ids.TID)
		}
		return m, nil
	}
	m, err := step(smb.Negotiate1(1), smb.CmdNegotiate, 1, false)
	if err != nil {
		return fail("", 0, err)
	}
	if n, err := smb.ParseNegotiate1(m); err != nil || m.Status != 0 || n.DialectIndex != 0 {
		return fail(ReasonProtocolError, m.Status, fmt.Errorf("%w: SMBv1 refused on the second connection", smb.ErrMalformed))
	}
	m, err = step(smb.SessionSetupAnonymous(smb.IDs{MID: 2}), smb.CmdSessionSetup, 2, false)
	if err != nil {
		return fail("", 0, err)
	}
	if m.Status != smb.StatusSuccess {
		return fail(ReasonAnonymousRefused, m.Status, nil)
	}
	os = smb.NativeOS(m)
	ids.UID = m.UID
	m, err = step(smb.TreeConnectIPC(smb.IDs{UID: ids.UID, MID: 3}, addr.String()), smb.CmdTreeConnect, 3, false)
	if err != nil {
		return fail("", 0, err)
	}
	if m.Status != smb.StatusSuccess {
		return fail(ReasonIPCRefused, m.Status, nil)
	}
	ids.TID = m.TID
	return c, ids, os, "", 0, nil
}

func (p *Prober) ms17(ctx context.Context, addr netip.Addr, port int, wait func(context.Context) error) (MS17, Reason, uint32, string, error) {
	c, ids, os, reason, status, err := p.ipcSession(ctx, addr, port, wait)
	if c == nil {
		return MS17Unknown, reason, status, os, err
	}
	defer c.Close()
	ids.MID = 4
	rep, err := c.exchange(smb.PeekNamedPipe(ids))
	if err != nil {
		return MS17Unknown, classify(ctx, err), 0, os, err
	}
	m, err := smb.ParseSMB1(rep)
	if err == nil {
		err = m.CheckReply(smb.CmdTransaction, ids.MID)
	}
	if err == nil && m.TID != ids.TID {
		err = fmt.Errorf("%w: TID %d in reply to TID %d", smb.ErrMalformed, m.TID, ids.TID)
	}
	if err != nil {
		return MS17Unknown, ReasonProtocolError, 0, os, err
	}
	switch m.Status {
	case smb.StatusInsuffServerResources:
		return MS17Vulnerable, ReasonInsuffResources, m.Status, os, nil
	case smb.StatusInvalidHandle:
		return MS17Patched, ReasonInvalidHandle, m.Status, os, nil
	case smb.StatusAccessDenied:
		return MS17Patched, ReasonAccessDenied, m.Status, os, nil
	}
	return MS17Unknown, ReasonUnexpectedStatus, m.Status, os, nil
}

func (p *Prober) pulsar(ctx context.Context, addr netip.Addr, port int, wait func(context.Context) error) (smb.Implant, Reason, error) {
	c, ids, _, reason, _, err := p.ipcSession(ctx, addr, port, wait)
	if c == nil {
		return smb.Implant{}, reason, err
	}
	defer c.Close()
	rep, err := c.exchange(smb.DoublePulsarPing(ids))
	if err != nil {
		return smb.Implant{}, classify(ctx, err), err
	}
	m, err := smb.ParseSMB1(rep)
	var imp smb.Implant
	if err == nil {
		imp, err = smb.ParsePing(m)
	}
	if err == nil && m.TID != ids.TID {
		err = fmt.Errorf("%w: TID %d in reply to TID %d", smb.ErrMalformed, m.TID, ids.TID)
	}
	if err != nil {
		return smb.Implant{}, ReasonProtocolError, err
	}
	if imp.Present {
		return imp, ReasonImplantAnswered, nil
	}
	return imp, ReasonNoImplant, nil
}
