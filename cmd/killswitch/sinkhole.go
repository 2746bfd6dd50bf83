package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/killswitch-dev/killswitch/internal/alert"
	"github.com/killswitch-dev/killswitch/internal/hub/store"
	"github.com/killswitch-dev/killswitch/internal/sinkhole"
)

const sinkholeUsage = `Usage:
  killswitch sinkhole [flags]                 answer WannaCry's kill-switch names, alert on every host that asks
  killswitch sinkhole check --resolver ADDR   does this resolver stop the worm? (exit 3 if not)
  killswitch sinkhole list [--domains FILE]   the kill-switch names answered

Flags:
`

func runSinkhole(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "check":
			return runSinkholeCheck(ctx, args[1:], stdout, stderr)
		case "list":
			return runSinkholeList(args[1:], stdout, stderr)
		}
	}
	fs := newFlags("sinkhole", stderr)
	fs.Usage = func() { fmt.Fprint(stderr, sinkholeUsage); fs.PrintDefaults() }
	dnsAddr := fs.String("dns", ":53", "DNS listen address, UDP and TCP (\"\" for none)")
	httpAddr := fs.String("http", ":80", "HTTP listen address (\"\" for none)")
	answer := fs.String("answer", "", "address(es) the kill-switch names resolve to, comma-separated (default: the --http address, if it names one)")
	upstream := fs.String("upstream", "", "resolver for every other name (ADDR[:PORT]); empty: serve only the kill-switch names (conditional zone) and refuse the rest")
	domainsFile := fs.String("domains", "", "file of extra kill-switch names, one per line (# comments)")
	alerts := fs.String("alerts", "", "append alerts (ECS JSON Lines) to FILE (default stdout)")
	group := fs.Duration("group", time.Hour, "one alert per host per this period; repeated hits are counted into it")
	hubFlags := addAgentFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	domains, err := loadDomains(*domainsFile)
	if err != nil {
		return err
	}
	var answers []netip.Addr
	for _, a := range strings.Split(*answer, ",") {
		if a = strings.TrimSpace(a); a == "" {
			continue
		}
		ip, err := netip.ParseAddr(a)
		if err != nil {
			return fmt.Errorf("%w: --answer %q is not an address", errUsage, a)
		}
		answers = append(answers, ip)
	}
	if len(answers) == 0 && *httpAddr != "" {
		if host, _, err := net.SplitHostPort(*httpAddr); err == nil {
			if ip, err := netip.ParseAddr(host); err == nil && !ip.IsUnspecified() {
				answers = append(answers, ip)
			}
		}
	}
	if len(answers) == 0 {
		return fmt.Errorf("%w: --answer is needed when --http listens on every address (give the address hosts reach it on)", errUsage)
	}
	if *group <= 0 {
		return fmt.Errorf("%w: --group must be positive", errUsage)
	}
	out := stdout
	if *alerts != "" {
		f, err := os.OpenFile(*alerts, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			return err
		}
		defer f.Close()
		out = f
	}
	rep := sinkhole.NewReporter(alert.NewWriter(out), *group)
	ag, err := hubFlags.open(ctx, nil, newLogger(stderr, false))
	if err != nil {
		return err
	}
	rep.OnAlert = func(a alert.Alert) {
		fmt.Fprintln(stderr, "sinkhole: ALERT", a.Message)
		if ag != nil { // the hub makes it an incident on the host that asked
			ag.Report(store.KindSinkhole, a.Source.IP+"@"+a.Timestamp.Format(time.RFC3339), a)
		}
	}
	if ag != nil {
		defer ag.Close()
		actx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { ag.Run(actx); close(done) }()
		defer func() { stop(); <-done }()
	}
	srv, err := sinkhole.Start(sinkhole.Config{DNSAddr: *dnsAddr, HTTPAddr: *httpAddr, Answer: answers, Upstream: *upstream,
		Domains: domains, Reporter: rep})
	if err != nil {
		return err
	}
	mode := "forwarding other names to " + *upstream
	if *upstream == "" {
		mode = "conditional zone: other names refused"
	}
	fmt.Fprintf(stderr, "sinkhole: DNS on %s, HTTP on %s, %d kill-switch names answer %v; %s\n",
		srv.DNSAddr(), srv.HTTPAddr(), len(domains.List()), answers, mode)
	<-ctx.Done()
	srv.Close()
	st := srv.Stats()
	fmt.Fprintf(stderr, "sinkhole: stopped: %d queries (%d kill-switch, %d forwarded, %d forward errors, %d refused), %d HTTP hits, %d hosts asked\n",
		st.Queries, st.KillswitchQueries, st.Forwarded, st.ForwardErrors, st.Refused, st.HTTPHits, len(rep.Hosts()))
	return nil
}

func loadDomains(path string) (*sinkhole.Domains, error) {
	var extra []string
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if extra, err = sinkhole.ReadDomains(f); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", errUsage, path, err)
		}
	}
	d, err := sinkhole.NewDomains(extra...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	return d, nil
}

func runSinkholeList(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("sinkhole list", stderr)
	domainsFile := fs.String("domains", "", "file of extra kill-switch names")
	if err := parse(fs, args); err != nil {
		return err
	}
	d, err := loadDomains(*domainsFile)
	if err != nil {
		return err
	}
	for _, n := range d.List() {
		fmt.Fprintln(stdout, n)
	}
	return nil
}

func runSinkholeCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("sinkhole check", stderr)
	resolver := fs.String("resolver", "", "the resolver a segment's hosts use, ADDR[:PORT] (required)")
	httpPort := fs.Int("http-port", 80, "port the worm's HTTP check goes to")
	public := fs.Bool("public", false, "also fetch answers outside private ranges (the internet sinkhole)")
	domainsFile := fs.String("domains", "", "file of extra kill-switch names")
	timeout := fs.Duration("timeout", 3*time.Second, "time-out for the DNS query and the HTTP fetch")
	asJSON := fs.Bool("json", false, "one JSON object per name")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *resolver == "" {
		return fmt.Errorf("%w: --resolver is required", errUsage)
	}
	if *httpPort < 1 || *httpPort > 65535 {
		return fmt.Errorf("%w: --http-port %d", errUsage, *httpPort)
	}
	d, err := loadDomains(*domainsFile)
	if err != nil {
		return err
	}
	results := sinkhole.Check(ctx, *resolver, d.List(), *httpPort, *public, *timeout)
	enc := json.NewEncoder(stdout)
	unprotected := 0
	for _, r := range results {
		if !r.Protected {
			unprotected++
		}
		if *asJSON {
			enc.Encode(r)
			continue
		}
		verdict := "PROTECTED"
		if !r.Protected {
			verdict = "EXPOSED"
		}
		fmt.Fprintf(stdout, "%-9s %s via %s: %s\n", verdict, r.Name, r.Resolver, r.Reason)
	}
	if unprotected > 0 {
		return fmt.Errorf("%w: %d of %d kill-switch names do not stop the worm through %s", errFindings, unprotected, len(results), *resolver)
	}
	return nil
}
