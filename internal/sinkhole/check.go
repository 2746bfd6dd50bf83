package sinkhole

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// CheckResult says whether one kill-switch name gets the answer that stops
// the worm when asked through a given resolver.
type CheckResult struct {
	Name      string   `json:"name"`
	Resolver  string   `json:"resolver"`
	Rcode     string   `json:"rcode"`
	Addresses []string `json:"addresses"`
	// HTTPStatus is the status of GET http://NAME/ at the first address
	// (0 if not tried or no answer).
	HTTPStatus int    `json:"http_status"`
	Protected  bool   `json:"protected"`
	Reason     string `json:"reason"`
}

// Check asks resolver for www.DOMAIN of every domain, as WannaCry does,
// then fetches http://www.DOMAIN/ from the address it got. Addresses
// outside private, loopback and link-local ranges are not fetched (that
// would be the internet sinkhole, which only protects hosts that reach the
// internet without a proxy) unless public is set.
func Check(ctx context.Context, resolver string, domains []string, httpPort int, public bool, timeout time.Duration) []CheckResult {
	if _, _, err := net.SplitHostPort(resolver); err != nil {
		resolver = net.JoinHostPort(resolver, "53")
	}
	var out []CheckResult
	for _, d := range domains {
		name := "www." + strings.TrimPrefix(d, "www.")
		r := CheckResult{Name: name, Resolver: resolver, Addresses: []string{}}
		q := new(dns.Msg)
		q.SetQuestion(dns.Fqdn(name), dns.TypeA)
		rep, _, err := (&dns.Client{Timeout: timeout}).ExchangeContext(ctx, q, resolver)
		if err != nil {
			r.Reason = "resolver did not answer: " + err.Error()
			out = append(out, r)
			continue
		}
		r.Rcode = dns.RcodeToString[rep.Rcode]
		var addrs []netip.Addr
		for _, rr := range rep.Answer {
			if a, ok := rr.(*dns.A); ok {
				ip, _ := netip.AddrFromSlice(a.A.To4())
				addrs = append(addrs, ip)
				r.Addresses = append(r.Addresses, ip.String())
			}
		}
		switch {
		case len(addrs) == 0:
			r.Reason = "no address: the worm's check fails and it spreads"
		case !public && !(addrs[0].IsPrivate() || addrs[0].IsLoopback() || addrs[0].IsLinkLocalUnicast()):
			r.Reason = fmt.Sprintf("resolves to public %s (the internet sinkhole): protects only hosts that reach the internet without a proxy; not fetched (--public to fetch)", addrs[0])
		default:
			r.HTTPStatus, err = fetch(ctx, name, netip.AddrPortFrom(addrs[0], uint16(httpPort)), timeout)
			switch {
			case err != nil:
				r.Reason = "no HTTP answer at " + addrs[0].String() + ": " + err.Error()
			case r.HTTPStatus == http.StatusOK:
				r.Protected, r.Reason = true, "answers 200: the worm stops here"
			default:
				r.Reason = fmt.Sprintf("HTTP %d: the worm's check needs a successful answer", r.HTTPStatus)
			}
		}
		out = append(out, r)
	}
	return out
}

func fetch(ctx context.Context, host string, at netip.AddrPort, timeout time.Duration) (int, error) {
	tr := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{Timeout: timeout}).DialContext(ctx, network, at.String())
	}}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+"/", nil)
	if err != nil {
		return 0, err
	}
	resp, err := (&http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}
