package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"slices"

	"github.com/killswitch-dev/killswitch/internal/cutoff"
)

// runCutoff: `cutoff list` shows the file-server clients a guard cut off
// after an attack through the share, and `cutoff release ADDR` lets one
// back in (once the workstation is cleaned).
func runCutoff(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || !slices.Contains([]string{"list", "release"}, args[0]) {
		return fmt.Errorf("%w: cutoff list|release ADDRESS", errUsage)
	}
	fs := newFlags("cutoff "+args[0], stderr)
	asJSON := fs.Bool("json", false, "list: JSON Lines instead of text")
	positional, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	nftArgv := []string{"nft"}
	if args[0] == "release" {
		if len(positional) == 0 {
			return fmt.Errorf("%w: cutoff release needs an address", errUsage)
		}
		for _, a := range positional {
			addr, err := netip.ParseAddr(a)
			if err != nil {
				return fmt.Errorf("%w: %q is not an IP address", errUsage, a)
			}
			if err := cutoff.Release(ctx, nftArgv, addr); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s may reach the file-sharing ports again\n", addr)
		}
		return nil
	}
	if len(positional) > 0 {
		return fmt.Errorf("%w: cutoff list takes no arguments", errUsage)
	}
	addrs, err := cutoff.List(ctx, nftArgv)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, a := range addrs {
			enc.Encode(map[string]string{"client": a.String()})
		}
		return nil
	}
	if len(addrs) == 0 {
		fmt.Fprintln(stdout, "no client is cut off")
	}
	for _, a := range addrs {
		fmt.Fprintln(stdout, a)
	}
	return nil
}
