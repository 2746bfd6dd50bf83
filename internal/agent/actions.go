package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/killswitch-dev/killswitch/internal/cutoff"
	"github.com/killswitch-dev/killswitch/internal/execblock"
	"github.com/killswitch-dev/killswitch/internal/hub/store"
	"github.com/killswitch-dev/killswitch/internal/nft"
	"github.com/killswitch-dev/killswitch/internal/restore"
)

// Host runs the hub's actions on this machine.
type Host struct {
	Exe   string // the killswitch binary: restore runs as its own process, as an operator's would
	Vault string
	Hub   string // isolation keeps this reachable
	// NFT is the command that runs nft (tests run it inside a network
	// namespace: ip netns exec NS nft).
	NFT []string
	// CutOffState is the guard's list of file-server clients cut off
	// (release-client actions edit it).
	CutOffState string
	// Blocker enforces block-hash actions (nil: this command runs no
	// guard, so it refuses them).
	Blocker *execblock.Process
	// AfterRestore is called with the incident id once a restore ran (the
	// guard re-reports the incident's new state).
	AfterRestore func(id string)

	mu       sync.Mutex
	isolated bool
}

const isolateTable = "killswitch_isolate"

// Isolated reports whether the host is isolated now.
func (h *Host) Isolated() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.isolated
}

// Run implements Executor.
func (h *Host) Run(ctx context.Context, a store.Action) (bool, string) {
	switch a.Kind {
	case "restore":
		return h.restore(ctx, a.Args)
	case "isolate":
		if err := h.Isolate(ctx); err != nil {
			return false, err.Error()
		}
		return true, "isolated: only the hub (" + h.Hub + ") and loopback are reachable; undone if the hub stays unreachable"
	case "release":
		if err := h.Release(ctx); err != nil {
			return false, err.Error()
		}
		return true, "released"
	case "block-hash", "unblock-hash":
		return h.blockHash(ctx, a)
	case "release-client":
		addr, err := netip.ParseAddr(a.Args)
		if err != nil {
			return false, "release-client: " + err.Error()
		}
		if err := (cutoff.Firewall{NFT: h.NFT, State: h.CutOffState}).Release(ctx, addr); err != nil {
			return false, err.Error()
		}
		return true, "released: " + addr.String() + " may reach the file-sharing ports again"
	}
	return false, fmt.Sprintf("unknown action %q", a.Kind)
}

func (h *Host) blockHash(ctx context.Context, a store.Action) (bool, string) {
	if h.Blocker == nil {
		return false, "no guard runs on this host: block-hash needs killswitch guard --hub"
	}
	sum, err := execblock.ParseSum(a.Args)
	if err != nil {
		return false, err.Error()
	}
	if a.Kind == "unblock-hash" {
		was, err := h.Blocker.Unblock(ctx, sum)
		if err != nil {
			return false, err.Error()
		}
		if !was {
			return true, "was not blocked here"
		}
		return true, "unblocked: the binary may run again"
	}
	added, err := h.Blocker.Block(ctx, sum, "hub action "+a.ID+" by "+a.CreatedBy)
	if err != nil {
		return false, err.Error()
	}
	result := "blocked: every execution of this binary is refused, under any name"
	if !added {
		result = "already blocked"
	}
	if pids, err := h.Blocker.Running(ctx, sum); err == nil && len(pids) > 0 {
		result += fmt.Sprintf("; %d process(es) were already running it: pids %v", len(pids), pids)
	} else if err == nil {
		result += "; none running"
	}
	return true, result
}

func (h *Host) restore(ctx context.Context, id string) (bool, string) {
	if strings.HasPrefix(id, "-") {
		return false, "bad incident id"
	}
	cmd := exec.CommandContext(ctx, h.Exe, "restore", "--vault", h.Vault, "--incident", id, "--json")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	counts := map[string]int{}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		var line restore.Action
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Op != "" {
			if line.Error != "" {
				counts["failed"]++
			} else {
				counts[line.Op]++
			}
		}
	}
	summary := fmt.Sprintf("%d restored, %d removed, %d kept both, %d failed", counts["restore"], counts["remove"], counts["keep-both"], counts["failed"])
	if h.AfterRestore != nil {
		h.AfterRestore(id)
	}
	if err != nil {
		return false, summary + ": " + strings.TrimSpace(lastLine(stderr.String()))
	}
	return true, summary
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func (h *Host) nft(ctx context.Context, script string) error {
	return nft.Run(ctx, h.NFT, script)
}

// Isolate drops every packet in and out except loopback and the hub, so
// that the host can still report and be released.
func (h *Host) Isolate(ctx context.Context) error {
	u, err := url.Parse(h.Hub)
	if err != nil || u.Host == "" {
		return fmt.Errorf("isolate: hub address %q", h.Hub)
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "443"
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(ips) == 0 {
		return fmt.Errorf("isolate: cannot resolve the hub %s, so it could not be kept reachable: %v", host, err)
	}
	var allow strings.Builder
	for _, ip := range ips {
		fam := "ip"
		if ip.Unmap().Is6() {
			fam = "ip6"
		}
		a := ip.Unmap().String()
		fmt.Fprintf(&allow, "\t\t%s daddr %s tcp dport %s accept\n", fam, a, port)
		fmt.Fprintf(&allow, "\t\t%s saddr %s tcp sport %s accept\n", fam, a, port)
	}
	// One nft transaction: drop any older isolation table, make the new one.
	script := fmt.Sprintf(`add table inet %[1]s
delete table inet %[1]s
table inet %[1]s {
	chain in {
		type filter hook input priority -10; policy drop;
		iif "lo" accept
%[2]s	}
	chain out {
		type filter hook output priority -10; policy drop;
		oif "lo" accept
%[2]s	}
}
`, isolateTable, allow.String())
	if err := h.nft(ctx, script); err != nil {
		return err
	}
	h.mu.Lock()
	h.isolated = true
	h.mu.Unlock()
	return nil
}

// Release removes the isolation.
func (h *Host) Release(ctx context.Context) error {
	if err := h.nft(ctx, "add table inet "+isolateTable+"\ndelete table inet "+isolateTable+"\n"); err != nil {
		return err
	}
	h.mu.Lock()
	h.isolated = false
	h.mu.Unlock()
	return nil
}

// Watch releases the host when it has been isolated and the hub has not
// answered for longer than timeout: an isolation that cuts the host off
// from the hub as well could never be lifted from the console.
func (h *Host) Watch(ctx context.Context, lastContact func() time.Time, timeout time.Duration, onRelease func()) {
	t := time.NewTicker(timeout / 10)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if h.Isolated() && time.Since(lastContact()) > timeout {
				if err := h.Release(ctx); err == nil && onRelease != nil {
					onRelease()
				}
			}
		}
	}
}
