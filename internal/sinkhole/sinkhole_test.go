package sinkhole

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/goleak"

	"github.com/killswitch-dev/killswitch/internal/alert"
	"github.com/killswitch-dev/killswitch/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const wannacryURLHost = "www.iuqerfsodp9ifjaposdfjhgosurijfaewrwergwea.com"

func TestDomainsMatch(t *testing.T) {
	d, err := NewDomains("new-variant.example")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		wannacryURLHost: "iuqerfsodp9ifjaposdfjhgosurijfaewrwergwea.com",
		"IUQERFSODP9IFJAPOSDFJHGOSURIJFAEWRWERGWEA.COM.":      "iuqerfsodp9ifjaposdfjhgosurijfaewrwergwea.com",
		"www.ayylmaotjhsstasdfasdfasdfasdfasdfasdfasdf.com":   "ayylmaotjhsstasdfasdfasdfasdfasdfasdfasdf.com",
		"a.b.new-variant.example":                             "new-variant.example",
		"xiuqerfsodp9ifjaposdfjhgosurijfaewrwergwea.com":      "",
		"iuqerfsodp9ifjaposdfjhgosurijfaewrwergwea.com.evil.": "",
		"com": "",
		"":    "",
	} {
		got, ok := d.Match(name)
		if got != want || ok != (want != "") {
			t.Errorf("Match(%q) = %q, %v; want %q", name, got, ok, want)
		}
	}
	for _, bad := range []string{"com", "bad name.com", "*.example.com", strings.Repeat("a", 64) + ".com", "a..b"} {
		if _, err := NewDomains(bad); err == nil {
			t.Errorf("NewDomains(%q) accepted", bad)
		}
	}
	extra, err := ReadDomains(strings.NewReader("# new variants\nfoo.example  # seen 2026-11\n\nbar.example\n"))
	if err != nil || strings.Join(extra, ",") != "foo.example,bar.example" {
		t.Errorf("ReadDomains: %q %v", extra, err)
	}
	if _, err := ReadDomains(strings.NewReader("ok.example\nnot a name\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("bad line: %v", err)
	}
}

// upstream is a second DNS server for forwarding tests: it knows one name.
func upstream(t *testing.T) string {
	t.Helper()
	pc, ln, err := listenDNS("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if len(r.Question) == 1 && r.Question[0].Name == "intranet.test." {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: "intranet.test.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
				A: net.IPv4(127, 0, 0, 77)})
		} else {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	udp := &dns.Server{PacketConn: pc, Handler: h}
	tcp := &dns.Server{Listener: ln, Handler: h}
	var wg sync.WaitGroup
	started := make(chan struct{}, 2)
	for _, s := range []*dns.Server{udp, tcp} {
		s.NotifyStartedFunc = func() { started <- struct{}{} }
		wg.Add(1)
		go func() { defer wg.Done(); s.ActivateAndServe() }()
	}
	<-started
	<-started
	t.Cleanup(func() { udp.Shutdown(); tcp.Shutdown(); wg.Wait() })
	return pc.LocalAddr().String()
}

type lab struct {
	srv    *Server
	alerts *bytes.Buffer
	mu     *sync.Mutex
}

func (l lab) alertLines(t *testing.T) []alert.Alert {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []alert.Alert
	for _, line := range strings.Split(strings.TrimSpace(l.alerts.String()), "\n") {
		if line == "" {
			continue
		}
		var a alert.Alert
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func start(t *testing.T, upstreamAddr string) lab {
	t.Helper()
	d, err := NewDomains()
	if err != nil {
		t.Fatal(err)
	}
	buf, mu := &bytes.Buffer{}, &sync.Mutex{}
	rep := NewReporter(alert.NewWriter(lockedWriter{mu, buf}), time.Hour)
	srv, err := Start(Config{DNSAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Answer: []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		Upstream: upstreamAddr, Domains: d, Reporter: rep, UpstreamTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return lab{srv, buf, mu}
}

// resolver is the Go resolver pointed at the sinkhole, from a given source address.
func resolver(dnsAddr string, from netip.Addr) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.UDPAddr{IP: from.AsSlice()}}
		if network == "tcp" {
			d.LocalAddr = &net.TCPAddr{IP: from.AsSlice()}
		}
		return d.DialContext(ctx, network, dnsAddr)
	}}
}

// wannacryCheck does what the worm does: resolve the kill-switch name, then
// GET http://name/ at the answer, from the address from.
func wannacryCheck(t *testing.T, l lab, from netip.Addr) int {
	t.Helper()
	ips, err := resolver(l.srv.DNSAddr(), from).LookupNetIP(context.Background(), "ip4", wannacryURLHost)
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(l.srv.HTTPAddr())
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: from.AsSlice()}}
		return d.DialContext(ctx, network, net.JoinHostPort(ips[0].String(), port))
	}}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://" + wannacryURLHost + "/")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestWannaCryCheck: the worm's check through the sinkhole gets a 200, and
// each asking host raises exactly one grouped alert, however often it asks.
func TestWannaCryCheck(t *testing.T) {
	l := start(t, upstream(t))
	hostA, hostB := netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")
	for range 3 {
		if code := wannacryCheck(t, l, hostA); code != http.StatusOK {
			t.Fatalf("HTTP %d, want 200", code)
		}
	}
	if code := wannacryCheck(t, l, hostB); code != http.StatusOK {
		t.Fatalf("HTTP %d", code)
	}
	alerts := l.alertLines(t)
	if len(alerts) != 2 {
		t.Fatalf("%d alerts for two hosts, want 2: %+v", len(alerts), alerts)
	}
	seen := map[string]bool{}
	for _, a := range alerts {
		seen[a.Source.IP] = true
		if a.Event.Action != alert.ActionKillswitchLookup || a.Event.Kind != "alert" || a.Killswitch.Domains[0] != "iuqerfsodp9ifjaposdfjhgosurijfaewrwergwea.com" {
			t.Errorf("alert %+v", a)
		}
	}
	if !seen["127.0.0.2"] || !seen["127.0.0.3"] {
		t.Errorf("alerts name %v", seen)
	}
	hosts := l.srv.cfg.Reporter.Hosts()
	if len(hosts) != 2 || hosts[0].Hits != 6 || hosts[1].Hits != 2 { // a DNS and an HTTP hit per check
		t.Errorf("grouped hits %+v", hosts)
	}
	if st := l.srv.Stats(); st.HTTPHits != 4 || st.KillswitchQueries != 4 {
		t.Errorf("stats %+v", st)
	}
}

// TestRealClients uses dig and curl, as an operator would.
func TestRealClients(t *testing.T) {
	dig := testenv.RequireTool(t, "dig")
	curl := testenv.RequireTool(t, "curl")
	l := start(t, upstream(t))
	host, port, _ := net.SplitHostPort(l.srv.DNSAddr())
	digq := func(args ...string) string {
		out, err := exec.Command(dig, append([]string{"@" + host, "-p", port, "+short", "+time=2", "+tries=1"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("dig %v: %v %s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := digq(wannacryURLHost); got != "127.0.0.1" {
		t.Errorf("dig kill-switch name: %q", got)
	}
	if got := digq("+tcp", "WWW.IFFERFSODP9IFJAPOSDFJHGOSURIJFAEWRWERGWEA.COM"); got != "127.0.0.1" {
		t.Errorf("dig over TCP, upper case: %q", got)
	}
	if got := digq("intranet.test"); got != "127.0.0.77" {
		t.Errorf("forwarded name: %q", got)
	}
	if got := digq("+tcp", "intranet.test"); got != "127.0.0.77" {
		t.Errorf("forwarded over TCP: %q", got)
	}
	hhost, hport, _ := net.SplitHostPort(l.srv.HTTPAddr())
	out, err := exec.Command(curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", "--resolve", wannacryURLHost+":"+hport+":"+hhost,
		"http://"+wannacryURLHost+":"+hport+"/").CombinedOutput()
	if err != nil || string(out) != "200" {
		t.Errorf("curl: %v %q", err, out)
	}
	out, _ = exec.Command(curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://"+l.srv.HTTPAddr()+"/").CombinedOutput()
	if string(out) != "404" {
		t.Errorf("curl without a kill-switch host: %q, want 404", out)
	}
	if n := len(l.alertLines(t)); n != 1 {
		t.Errorf("%d alerts from one host, want 1", n)
	}
}

func TestForwardingFailuresAndZoneMode(t *testing.T) {
	dead, _ := net.ListenPacket("udp", "127.0.0.254:0") // not 127.0.0.1: the sinkhole could take the port
	deadAddr := dead.LocalAddr().String()
	dead.Close() // nothing answers there now
	l := start(t, deadAddr)
	q := new(dns.Msg)
	q.SetQuestion("intranet.test.", dns.TypeA)
	if rep := l.srv.Respond(q, netip.MustParseAddr("127.0.0.9"), false); rep.Rcode != dns.RcodeServerFailure {
		t.Errorf("dead upstream: rcode %s, want SERVFAIL", dns.RcodeToString[rep.Rcode])
	}
	zone := start(t, "")
	if rep := zone.srv.Respond(q, netip.MustParseAddr("127.0.0.9"), false); rep.Rcode != dns.RcodeRefused {
		t.Errorf("zone mode, other name: rcode %s, want REFUSED", dns.RcodeToString[rep.Rcode])
	}
	q.SetQuestion(wannacryURLHost+".", dns.TypeAAAA)
	if rep := zone.srv.Respond(q, netip.MustParseAddr("127.0.0.9"), false); rep.Rcode != dns.RcodeSuccess || len(rep.Answer) != 0 || !rep.Authoritative {
		t.Errorf("AAAA with only an IPv4 answer: %v", rep)
	}
}

// TestHostilePackets: garbage datagrams and malformed queries do not stop
// the server from answering the next real query.
func TestHostilePackets(t *testing.T) {
	l := start(t, "")
	c, err := net.Dial("udp", l.srv.DNSAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, junk := range [][]byte{{}, {0}, bytes.Repeat([]byte{0xff}, 512), []byte("\x12\x34\x01\x00\x00\x05\x00\x00\x00\x00\x00\x00\xc0\x0c"),
		append([]byte("\x00\x01\x80\x00\x00\x01\x00\x00\x00\x00\x00\x00"), bytes.Repeat([]byte{63}, 300)...)} {
		c.Write(junk)
	}
	q := new(dns.Msg)
	q.SetQuestion(wannacryURLHost+".", dns.TypeA)
	rep, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(q, l.srv.DNSAddr())
	if err != nil || len(rep.Answer) != 1 {
		t.Fatalf("after garbage: %v %v", rep, err)
	}
	bad := new(dns.Msg)
	bad.SetQuestion("x.test.", dns.TypeA)
	bad.Question = append(bad.Question, bad.Question[0])
	if rep := l.srv.Respond(bad, netip.Addr{}, false); rep.Rcode != dns.RcodeFormatError {
		t.Errorf("two questions: %s", dns.RcodeToString[rep.Rcode])
	}
	bad.Opcode = dns.OpcodeUpdate
	if rep := l.srv.Respond(bad, netip.Addr{}, false); rep.Rcode != dns.RcodeNotImplemented {
		t.Errorf("UPDATE: %s", dns.RcodeToString[rep.Rcode])
	}
}

// FuzzRespond feeds arbitrary packets through the decoder and the handler.
func FuzzRespond(f *testing.F) {
	q := new(dns.Msg)
	q.SetQuestion(wannacryURLHost+".", dns.TypeA)
	b, _ := q.Pack()
	f.Add(b)
	q.SetQuestion("other.test.", dns.TypeANY)
	b, _ = q.Pack()
	f.Add(b)
	d, _ := NewDomains()
	srv := &Server{cfg: Config{Domains: d, Reporter: NewReporter(nil, time.Hour), Answer: []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::1")}, TTL: 60}}
	f.Fuzz(func(t *testing.T, b []byte) {
		m := new(dns.Msg)
		if m.Unpack(b) != nil {
			return
		}
		rep := srv.Respond(m, netip.MustParseAddr("127.0.0.1"), false)
		if rep == nil {
			t.Fatal("no reply")
		}
		if _, err := rep.Pack(); err != nil && len(m.Question) == 1 && rep.Rcode == dns.RcodeSuccess {
			t.Fatalf("reply does not pack: %v", err)
		}
	})
}

func FuzzReadDomains(f *testing.F) {
	f.Add("a.example\n# c\nb.example # d\n")
	f.Fuzz(func(t *testing.T, s string) {
		names, err := ReadDomains(strings.NewReader(s))
		if err != nil {
			return
		}
		d, err := NewDomains(names...)
		if err != nil {
			t.Fatalf("ReadDomains accepted %q, NewDomains refused it: %v", names, err)
		}
		for _, n := range names {
			if _, ok := d.Match(n); !ok {
				t.Fatalf("%q does not match itself", n)
			}
		}
	})
}

func TestRefusesToForwardToItself(t *testing.T) {
	d, _ := NewDomains()
	pc, _ := net.ListenPacket("udp", "127.0.0.1:0")
	addr := pc.LocalAddr().String()
	pc.Close()
	_, err := Start(Config{DNSAddr: addr, Upstream: addr, Answer: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, Domains: d, Reporter: NewReporter(nil, time.Hour)})
	if err == nil || !strings.Contains(err.Error(), "itself") {
		t.Errorf("upstream = own address: %v", err)
	}
}
