package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/killswitch-dev/killswitch/internal/cutoff"
)

const defaultCutOff = "/var/lib/killswitch/cutoff.json"

// runCutoff: `cutoff list` shows the file-server clients a guard cut off
// after an attack through the share, and `cutoff release ADDR` lets one
// back in (once the workstation is cleaned).
func runCutoff(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || !slices.Contains([]string{"list", "release"}, args[0]) {
		return fmt.Errorf("%w: cutoff list|release ADDRESS", errUsage)
	}
	fs := newFlags("cutoff "+args[0], stderr)
	asJSON := fs.Bool("json", false, "list: JSON Lines instead of a table")
	state := fs.String("state", defaultCutOff, "the guard's list of clients cut off (its --cutoff-state)")
	positional, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	fw := cutoff.Firewall{NFT: []string{"nft"}, State: *state}
	if args[0] == "release" {
		if len(positional) == 0 {
			return fmt.Errorf("%w: cutoff release needs an address", errUsage)
		}
		for _, a := range positional {
			addr, err := netip.ParseAddr(a)
			if err != nil {
				return fmt.Errorf("%w: %q is not an IP address", errUsage, a)
			}
			if err := fw.Release(ctx, addr); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s may reach the file-sharing ports again\n", addr)
		}
		return nil
	}
	if len(positional) > 0 {
		return fmt.Errorf("%w: cutoff list takes no arguments", errUsage)
	}
	list, err := fw.List()
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, e := range list {
			enc.Encode(e)
		}
		return nil
	}
	if len(list) == 0 {
		fmt.Fprintln(stdout, "no client is cut off")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENT\tCUT OFF SINCE\tINCIDENT")
	for _, e := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", e.Address, e.Since.Local().Format(time.DateTime), e.Incident)
	}
	return tw.Flush()
}
