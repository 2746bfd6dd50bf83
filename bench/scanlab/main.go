// Command scanlab starts a lab of SMB peers on loopback (Samba in three
// configurations, Windows hosts replayed from real captures, hostile
// servers, closed and filtered addresses), scans it with the killswitch
// binary and with nmap's SMB scripts, checks every verdict, compares the
// two and prints the figures. Run as root; bench/scan.sh wraps it.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/killswitch-dev/killswitch/internal/scan"
	"github.com/killswitch-dev/killswitch/internal/smblab"
)

func main() {
	hold := flag.Bool("hold", false, "start the lab, print its addresses and wait for Ctrl-C")
	killswitch := flag.String("killswitch", "killswitch", "the killswitch binary to measure")
	noNmap := flag.Bool("no-nmap", false, "do not run nmap")
	samba := flag.Int("samba", 50, "hosts per Samba configuration")
	recorded := flag.Int("recorded", 10, "hosts per recorded Windows host")
	hostile := flag.Int("hostile", 2, "hosts per hostile behaviour")
	closed := flag.Int("closed", 12, "addresses where nothing listens")
	filtered := flag.Int("filtered", 10, "addresses whose packets are dropped")
	timeout := flag.Duration("timeout", 2*time.Second, "killswitch scan --timeout")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	pcaps, err := smblab.PcapDir()
	check(err)
	dir, err := os.MkdirTemp("", "scanlab")
	check(err)
	defer os.RemoveAll(dir)
	start := time.Now()
	lab, err := smblab.StartLab(dir, pcaps, smblab.LabSpec{SambaEach: *samba, RecordedEach: *recorded, HostileEach: *hostile,
		Closed: *closed, Filtered: *filtered, Slow: 3 * *timeout})
	check(err)
	defer lab.Close()
	fmt.Printf("lab: %d hosts up in %s\n", lab.Len(), time.Since(start).Round(time.Millisecond))
	if *hold {
		for _, h := range lab.Hosts {
			fmt.Printf("%s\t%s\n", h.Addr, h.Kind)
		}
		<-ctx.Done()
		return
	}

	// killswitch, as an operator runs it: the binary, default settings.
	var list strings.Builder
	for _, a := range lab.Addrs() {
		list.WriteString(a.String() + "\n")
	}
	cmd := exec.CommandContext(ctx, *killswitch, "scan", "-p", "445", "--json", "-q", "--timeout", timeout.String(), "-iL", "-")
	cmd.Stdin = strings.NewReader(list.String())
	start = time.Now()
	out, err := cmd.Output()
	ksTime := time.Since(start)
	if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() != 3) { // 3: vulnerable hosts found
		check(fmt.Errorf("killswitch scan: %v", err))
	}
	results := map[netip.Addr]scan.Result{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r scan.Result
		check(json.Unmarshal(sc.Bytes(), &r))
		results[r.IP] = r
	}
	wrong := 0
	for _, h := range lab.Hosts {
		r, ok := results[h.Addr]
		if !ok {
			fmt.Printf("WRONG %s (%s): no result\n", h.Addr, h.Kind)
			wrong++
			continue
		}
		if m := smblab.Check(r, h.Expect); len(m) > 0 || string(r.State) != h.State {
			fmt.Printf("WRONG %s (%s): %s %v\n", h.Addr, h.Kind, r.State, m)
			wrong++
		}
	}
	fmt.Printf("killswitch scan: %d hosts in %s = %.1f hosts/s; verdicts right: %d of %d\n",
		lab.Len(), ksTime.Round(time.Millisecond), float64(lab.Len())/ksTime.Seconds(), lab.Len()-wrong, lab.Len())
	if *noNmap {
		return
	}

	nm, nmTime, err := smblab.RunNmap(ctx, lab.Addrs(), 445)
	check(err)
	fmt.Printf("nmap %s (%s): %d hosts in %s = %.1f hosts/s\n", smblab.NmapScripts, strings.Join(smblab.NmapTiming, " "),
		len(nm), nmTime.Round(time.Millisecond), float64(len(nm))/nmTime.Seconds())
	fmt.Printf("speed-up: %.1fx\n", nmTime.Seconds()/ksTime.Seconds())
	count := map[string]int{}
	nmapRight := 0
	for _, h := range lab.Hosts {
		for _, d := range smblab.CompareNmap(h.Kind, results[h.Addr], nm[h.Addr], h.Expect) {
			count[d.String()]++
			if d.Correct != d.Ours {
				nmapRight++
			}
		}
	}
	lines := make([]string, 0, len(count))
	for l, n := range count {
		lines = append(lines, fmt.Sprintf("%4d× %s", n, l))
	}
	sort.Strings(lines)
	fmt.Printf("where nmap answered and disagreed (%d fields; nmap right in %d):\n%s\n", len(lines), nmapRight, strings.Join(lines, "\n"))
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "scanlab:", err)
		os.Exit(1)
	}
}
