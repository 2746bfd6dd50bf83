// Command scanlab starts a lab of SMB peers on loopback (Samba in three
// configurations, Windows hosts replayed from real captures, hostile
// servers, closed and filtered addresses), then scans it with killswitch
// and with nmap's SMB scripts, compares every verdict and prints the
// figures. Run as root: bench/scan.sh wraps it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/killswitch-dev/killswitch/internal/smblab"
)

func main() {
	hold := flag.Bool("hold", false, "start the lab, print its addresses and wait for Ctrl-C (for manual runs)")
	samba := flag.Int("samba", 50, "hosts per Samba configuration")
	recorded := flag.Int("recorded", 10, "hosts per recorded Windows host")
	hostile := flag.Int("hostile", 2, "hosts per hostile behaviour")
	closed := flag.Int("closed", 12, "addresses where nothing listens")
	filtered := flag.Int("filtered", 10, "addresses whose packets are dropped")
	flag.Parse()
	pcaps, err := smblab.PcapDir()
	if err != nil {
		fail(err)
	}
	dir, err := os.MkdirTemp("", "scanlab")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)
	start := time.Now()
	lab, err := smblab.StartLab(dir, pcaps, smblab.LabSpec{SambaEach: *samba, RecordedEach: *recorded, HostileEach: *hostile,
		Closed: *closed, Filtered: *filtered, Slow: 10 * time.Second})
	if err != nil {
		fail(err)
	}
	defer lab.Close()
	fmt.Fprintf(os.Stderr, "lab: %d hosts up in %s\n", lab.Len(), time.Since(start).Round(time.Millisecond))
	if *hold {
		for _, h := range lab.Hosts {
			fmt.Printf("%s\t%s\n", h.Addr, h.Kind)
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		defer stop()
		<-ctx.Done()
		return
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "scanlab:", err)
	os.Exit(1)
}
