package sinkhole

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Config says what the sinkhole listens on and answers.
type Config struct {
	DNSAddr  string       // UDP and TCP, e.g. ":53"; "" for no DNS
	HTTPAddr string       // e.g. ":80"; "" for no HTTP
	Answer   []netip.Addr // the addresses kill-switch names resolve to (the HTTP listener's)
	// Upstream is the resolver every other query is forwarded to
	// ("10.0.0.1:53"). Empty: the sinkhole serves only the kill-switch
	// names (a conditional zone behind the site's resolver) and refuses
	// the rest.
	Upstream        string
	UpstreamTimeout time.Duration
	TTL             uint32
	Domains         *Domains
	Reporter        *Reporter
}

// Stats are the sinkhole's counters.
type Stats struct {
	Queries, KillswitchQueries, Forwarded, ForwardErrors, Refused, HTTPHits, HTTPOther uint64
}

// Server is a running sinkhole.
type Server struct {
	cfg    Config
	udp    *dns.Server
	tcp    *dns.Server
	web    *http.Server
	webLn  net.Listener
	client *dns.Client
	tcpCli *dns.Client
	wg     sync.WaitGroup

	queries, killswitch, forwarded, fwdErrors, refused, httpHits, httpOther atomic.Uint64
}

// Start binds every listener and serves until Close.
func Start(cfg Config) (*Server, error) {
	if cfg.Domains == nil || cfg.Reporter == nil {
		return nil, errors.New("sinkhole: domains and reporter are required")
	}
	if len(cfg.Answer) == 0 {
		return nil, errors.New("sinkhole: no answer address: kill-switch names must resolve to the sinkhole's HTTP listener")
	}
	if cfg.UpstreamTimeout == 0 {
		cfg.UpstreamTimeout = 2 * time.Second
	}
	if cfg.TTL == 0 {
		cfg.TTL = 300
	}
	if cfg.Upstream != "" {
		if _, _, err := net.SplitHostPort(cfg.Upstream); err != nil {
			cfg.Upstream = net.JoinHostPort(cfg.Upstream, "53")
		}
	}
	s := &Server{cfg: cfg,
		client: &dns.Client{Net: "udp", Timeout: cfg.UpstreamTimeout, UDPSize: dns.DefaultMsgSize},
		tcpCli: &dns.Client{Net: "tcp", Timeout: cfg.UpstreamTimeout},
	}
	if cfg.DNSAddr != "" {
		pc, ln, err := listenDNS(cfg.DNSAddr)
		if err != nil {
			return nil, err
		}
		if up, err := netip.ParseAddrPort(cfg.Upstream); err == nil && cfg.Upstream != "" {
			own := pc.LocalAddr().(*net.UDPAddr).AddrPort()
			if up.Port() == own.Port() && (up.Addr().Unmap() == own.Addr().Unmap() || own.Addr().IsUnspecified() && (up.Addr().IsLoopback() || isLocal(up.Addr()))) {
				pc.Close()
				ln.Close()
				return nil, fmt.Errorf("sinkhole: upstream %s is the sinkhole itself: every forwarded query would loop", cfg.Upstream)
			}
		}
		s.udp = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(s.serveDNS)}
		s.tcp = &dns.Server{Listener: ln, Handler: dns.HandlerFunc(s.serveDNS), ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second}
		// Wait until both serve: Shutdown on a server still starting is a no-op.
		started := make(chan struct{}, 2)
		for _, srv := range []*dns.Server{s.udp, s.tcp} {
			srv.NotifyStartedFunc = func() { started <- struct{}{} }
			s.wg.Add(1)
			go func() { defer s.wg.Done(); srv.ActivateAndServe() }()
		}
		<-started
		<-started
	}
	if cfg.HTTPAddr != "" {
		ln, err := net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("sinkhole: HTTP on %s: %w", cfg.HTTPAddr, err)
		}
		s.webLn = ln
		s.web = &http.Server{Handler: http.HandlerFunc(s.serveHTTP), ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, MaxHeaderBytes: 8 << 10}
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.web.Serve(ln) }()
	}
	return s, nil
}

// DNSAddr and HTTPAddr are the bound addresses.
func (s *Server) DNSAddr() string {
	if s.udp == nil {
		return ""
	}
	return s.udp.PacketConn.LocalAddr().String()
}

func (s *Server) HTTPAddr() string {
	if s.webLn == nil {
		return ""
	}
	return s.webLn.Addr().String()
}

// Close stops every listener and waits for them.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		if srv != nil {
			srv.ShutdownContext(ctx)
		}
	}
	if s.web != nil {
		s.web.Shutdown(ctx)
	}
	s.wg.Wait()
	return nil
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	return Stats{s.queries.Load(), s.killswitch.Load(), s.forwarded.Load(), s.fwdErrors.Load(), s.refused.Load(), s.httpHits.Load(), s.httpOther.Load()}
}

// isLocal reports whether a is an address of this machine.
// listenDNS binds UDP and TCP on the same port. With port 0 the kernel
// picks a free UDP port, which may be taken for TCP: then another pair is
// tried.
func listenDNS(addr string) (net.PacketConn, net.Listener, error) {
	_, port, _ := net.SplitHostPort(addr)
	for attempt := 0; ; attempt++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("sinkhole: DNS on %s: %w", addr, err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if port != "0" || attempt == 20 {
			return nil, nil, fmt.Errorf("sinkhole: DNS over TCP on %s: %w", pc.LocalAddr(), err)
		}
	}
}

func isLocal(a netip.Addr) bool {
	addrs, _ := net.InterfaceAddrs()
	for _, x := range addrs {
		if p, err := netip.ParsePrefix(x.String()); err == nil && p.Addr().Unmap() == a.Unmap() {
			return true
		}
	}
	return false
}

func remoteAddr(a net.Addr) netip.Addr {
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

func (s *Server) serveDNS(w dns.ResponseWriter, req *dns.Msg) {
	_, tcp := w.RemoteAddr().(*net.TCPAddr)
	if rep := s.Respond(req, remoteAddr(w.RemoteAddr()), tcp); rep != nil {
		w.WriteMsg(rep)
	}
}

// Respond answers one decoded query from src: the sinkhole's own answer
// for kill-switch names, the upstream's for the rest (or REFUSED without
// one). It never panics on a hostile message.
func (s *Server) Respond(req *dns.Msg, src netip.Addr, tcp bool) *dns.Msg {
	s.queries.Add(1)
	rep := new(dns.Msg)
	if req.Response || req.Opcode != dns.OpcodeQuery || len(req.Question) != 1 {
		rep.SetRcodeFormatError(req)
		if req.Opcode != dns.OpcodeQuery {
			rep.Rcode = dns.RcodeNotImplemented
		}
		return rep
	}
	q := req.Question[0]
	if domain, ok := s.cfg.Domains.Match(q.Name); ok && q.Qclass == dns.ClassINET {
		s.killswitch.Add(1)
		rep.SetReply(req)
		rep.Authoritative = true
		for _, a := range s.cfg.Answer {
			hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: s.cfg.TTL}
			switch {
			case a.Is4() && (q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY):
				hdr.Rrtype = dns.TypeA
				rep.Answer = append(rep.Answer, &dns.A{Hdr: hdr, A: a.AsSlice()})
			case a.Is6() && (q.Qtype == dns.TypeAAAA || q.Qtype == dns.TypeANY):
				hdr.Rrtype = dns.TypeAAAA
				rep.Answer = append(rep.Answer, &dns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
			}
		}
		s.cfg.Reporter.Record(Hit{Time: time.Now(), Source: src, Domain: domain, Name: strings.TrimSuffix(q.Name, "."),
			Via: "dns", Detail: dns.TypeToString[q.Qtype]})
		return rep
	}
	if s.cfg.Upstream == "" {
		s.refused.Add(1)
		rep.SetRcode(req, dns.RcodeRefused)
		return rep
	}
	return s.forward(req, tcp)
}

// forward relays req to the upstream resolver, over TCP when the client
// used TCP or the UDP answer was truncated.
func (s *Server) forward(req *dns.Msg, tcp bool) *dns.Msg {
	s.forwarded.Add(1)
	cli := s.client
	if tcp {
		cli = s.tcpCli
	}
	rep, _, err := cli.Exchange(req, s.cfg.Upstream)
	if err == nil && rep.Truncated && !tcp {
		rep, _, err = s.tcpCli.Exchange(req, s.cfg.Upstream)
	}
	if err != nil || rep.Id != req.Id {
		s.fwdErrors.Add(1)
		fail := new(dns.Msg)
		fail.SetRcode(req, dns.RcodeServerFailure)
		return fail
	}
	return rep
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	domain, ok := s.cfg.Domains.Match(host)
	if !ok {
		s.httpOther.Add(1)
		http.NotFound(w, r)
		return
	}
	s.httpHits.Add(1)
	path := r.URL.Path
	if len(path) > 256 {
		path = path[:256]
	}
	s.cfg.Reporter.Record(Hit{Time: time.Now(), Source: remoteAddr(stringAddr(r.RemoteAddr)), Domain: domain,
		Name: strings.ToLower(host), Via: "http", Detail: r.Method + " " + path})
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintln(w, "killswitch sinkhole: this host asked for a WannaCry kill-switch domain and has been reported")
}

type stringAddr string

func (a stringAddr) Network() string { return "tcp" }
func (a stringAddr) String() string  { return string(a) }
