package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/killswitch-dev/killswitch/internal/hub/store"
	"github.com/killswitch-dev/killswitch/internal/scan"
)

const scanUsage = `Usage: killswitch scan [flags] TARGET...

TARGET is an address, a CIDR range (10.0.0.0/24), a range (10.0.0.1-50 or
10.0.0.1-10.0.0.50) or a host name. Sends only detection probes: no exploit,
no credentials, nothing that changes the target.

Exit status: 0 nothing vulnerable found, 3 a host lacks MS17-010 or carries
DoublePulsar, 1 error, 2 bad usage.

Flags:
`

func runScan(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("scan", stderr)
	fs.Usage = func() { fmt.Fprint(stderr, scanUsage); fs.PrintDefaults() }
	def := scan.DefaultOptions()
	ports := fs.String("p", "445,139", "ports to probe (139 gets a NetBIOS session first)")
	inputList := fs.String("iL", "", "read targets from `FILE` (one or more per line, # comments; - for stdin)")
	exclude := fs.String("exclude", "", "comma-separated targets not to scan")
	excludeFile := fs.String("exclude-file", "", "read targets not to scan from `FILE`")
	allowSpecial := fs.Bool("allow-special", false, "also scan special ranges (multicast, broadcast, documentation, 0/8), skipped by default")
	concurrency := fs.Int("concurrency", def.Concurrency, "hosts probed at once")
	rateFlag := fs.Float64("rate", def.Rate, "new connections per second, all hosts together (0: no limit)")
	hostRate := fs.Float64("host-rate", def.HostRate, "new connections per second to any one host")
	timeout := fs.Duration("timeout", def.Timeout, "time-out for each connect and each reply")
	retries := fs.Int("retries", def.Retries, "run a check again this many times when an open port did not answer in time")
	format := fs.String("format", "table", "output: "+strings.Join(scan.Formats, ", "))
	asJSON := fs.Bool("json", false, "same as --format json: one JSON object per host and port, as they finish")
	all := fs.Bool("all", false, "table: list closed and filtered ports too")
	output := fs.String("o", "", "write the report to `FILE` instead of stdout")
	quiet := fs.Bool("q", false, "no progress or summary on stderr")
	hubFlags := addAgentFlags(fs)
	specs, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if *asJSON {
		*format = "json"
	}
	if !slices.Contains(scan.Formats, *format) {
		return fmt.Errorf("%w: --format %q: want one of %s", errUsage, *format, strings.Join(scan.Formats, ", "))
	}
	opt := def
	opt.Concurrency, opt.Rate, opt.HostRate, opt.Timeout, opt.Retries = *concurrency, *rateFlag, *hostRate, *timeout, *retries
	if opt.Ports, err = parsePorts(*ports); err != nil {
		return err
	}
	if opt.Concurrency < 1 || opt.HostRate <= 0 || opt.Rate < 0 || opt.Timeout <= 0 || opt.Retries < 0 {
		return fmt.Errorf("%w: --concurrency, --host-rate and --timeout must be positive, --rate and --retries 0 or more", errUsage)
	}
	if *inputList != "" {
		more, err := scan.ReadTargetFile(*inputList)
		if err != nil {
			return err
		}
		specs = append(specs, more...)
	}
	var excl []string
	if *exclude != "" {
		excl = strings.Split(*exclude, ",")
	}
	if *excludeFile != "" {
		more, err := scan.ReadTargetFile(*excludeFile)
		if err != nil {
			return err
		}
		excl = append(excl, more...)
	}
	if len(specs) == 0 {
		fs.Usage()
		return fmt.Errorf("%w: no targets", errUsage)
	}
	targets, err := scan.NewTargets(ctx, scan.TargetOptions{Include: specs, Exclude: excl, AllowSpecial: *allowSpecial})
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if targets.Skipped > 0 && !*quiet {
		fmt.Fprintf(stderr, "scan: skipping %d addresses in special ranges (multicast, broadcast, documentation...); --allow-special scans them\n", targets.Skipped)
	}
	if targets.Len() == 0 {
		return fmt.Errorf("%w: every target is excluded", errUsage)
	}

	out := stdout
	if *output != "" {
		f, err := os.OpenFile(*output, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
		if err != nil {
			return err
		}
		defer f.Close()
		out = f
	}

	var bar *progress
	var latest scan.Progress
	if !*quiet {
		bar = newProgress(stderr, "scan", "hosts", 1)
		if !bar.tty {
			bar.min = 200
		}
		bar.extra = func() string {
			rate := 0.0
			if latest.Elapsed > 0 {
				rate = float64(latest.Done) / latest.Elapsed.Seconds()
			}
			return fmt.Sprintf("%.0f hosts/s  %d open  %d vulnerable", rate, latest.Open, latest.Vulnerable)
		}
		opt.Progress = func(p scan.Progress) {
			latest = p
			bar.update(int(p.Done), int(p.Total))
		}
	}
	ag, err := hubFlags.open(ctx, nil, newLogger(stderr, false))
	if err != nil {
		return err
	}
	if ag != nil {
		defer ag.Close()
	}
	var results []scan.Result
	jw := scan.NewJSONWriter(out)
	var writeErr error
	sum, err := scan.Run(ctx, targets, opt, func(r scan.Result) {
		if ag != nil && r.State == scan.PortOpen {
			ag.Report(store.KindScan, netip.AddrPortFrom(r.IP, uint16(r.Port)).String(), r)
		}
		if *format == "json" {
			if err := jw.Write(r); err != nil && writeErr == nil {
				writeErr = err
			}
			if r.Vulnerable() {
				results = append(results, r) // kept only to count
			}
			return
		}
		results = append(results, r)
	})
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if bar != nil && sum.Interrupted {
		bar.finish()
	}
	switch *format {
	case "table":
		writeErr = scan.WriteTable(out, results, *all)
	case "csv":
		writeErr = scan.WriteCSV(out, results)
	case "sarif":
		writeErr = scan.WriteSARIF(out, results, version)
	}
	if writeErr != nil {
		return writeErr
	}
	if !*quiet {
		state := "scanned"
		if sum.Interrupted {
			state = "interrupted after"
		}
		fmt.Fprintf(stderr, "scan: %s %d of %d hosts in %s (%.0f hosts/s): %s\n", state, sum.Done, sum.Total,
			sum.Elapsed.Round(time.Millisecond), sum.HostsPerSecond(), tally(results, *format == "json"))
	}
	if ag != nil {
		if left := flush(context.WithoutCancel(ctx), ag, 30*time.Second); left > 0 {
			fmt.Fprintf(stderr, "scan: %d results wait in the outbox for the hub (%s)\n", left, ag.Hub())
		}
	}
	if sum.Vulnerable > 0 {
		return fmt.Errorf("%w: %d host ports lack MS17-010 or carry DoublePulsar", errFindings, sum.Vulnerable)
	}
	if sum.Interrupted {
		return fmt.Errorf("scan interrupted")
	}
	return nil
}

// tally summarizes the findings for the closing line on stderr.
func tally(rs []scan.Result, vulnerableOnly bool) string {
	var implant, vuln, smb1, unknown int
	for _, r := range rs {
		switch {
		case r.DoublePulsar != nil && *r.DoublePulsar:
			implant++
		case r.MS17010 == scan.MS17Vulnerable:
			vuln++
		case r.SMB1 != nil && *r.SMB1:
			smb1++
		case r.State == scan.PortOpen && r.SMB1 == nil:
			unknown++
		}
	}
	if vulnerableOnly {
		return fmt.Sprintf("%d DoublePulsar, %d MS17-010 missing", implant, vuln)
	}
	return fmt.Sprintf("%d DoublePulsar, %d MS17-010 missing, %d more with SMBv1 on, %d undetermined", implant, vuln, smb1, unknown)
}

func parsePorts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		p, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("%w: -p %q: ports are numbers from 1 to 65535, comma-separated", errUsage, s)
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}
