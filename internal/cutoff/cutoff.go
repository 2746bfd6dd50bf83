package cutoff

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/killswitch-dev/killswitch/internal/netns"
	"github.com/killswitch-dev/killswitch/internal/nft"
)

// Ports are the file-sharing ports a client is cut off from (SMB over TCP
// and over NetBIOS).
var Ports = []uint16{445, 139}

// ErrNoClient means the process holds no connection to a file-sharing port.
var ErrNoClient = errors.New("cutoff: the process serves no remote client")

// Peer returns the remote address of the file-sharing connection that pid
// serves, read from its socket descriptors and its network namespace's
// TCP tables under proc (normally "/proc").
func Peer(proc string, pid int) (netip.Addr, error) {
	dir := proc + "/" + strconv.Itoa(pid)
	inodes := map[uint64]bool{}
	fds, err := os.ReadDir(dir + "/fd")
	if err != nil {
		return netip.Addr{}, fmt.Errorf("cutoff: pid %d: %w", pid, err)
	}
	for _, fd := range fds {
		link, err := os.Readlink(dir + "/fd/" + fd.Name())
		if err != nil || !strings.HasPrefix(link, "socket:[") {
			continue
		}
		if ino, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]"), 10, 64); err == nil {
			inodes[ino] = true
		}
	}
	conns, err := netns.TCP(proc, pid)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("cutoff: %w", err)
	}
	for _, c := range conns {
		if inodes[c.Inode] && c.State == netns.Established && isSharing(c.Local.Port()) {
			return c.Remote.Addr().Unmap(), nil
		}
	}
	return netip.Addr{}, fmt.Errorf("%w (pid %d)", ErrNoClient, pid)
}

func isSharing(port uint16) bool {
	for _, p := range Ports {
		if p == port {
			return true
		}
	}
	return false
}

const table = "killswitch_cutoff"

// Block drops every packet from addr to the file-sharing ports, in a
// table of its own (one transaction: the table, its sets and its rules are
// made if missing, and the address added). nftArgv is normally {"nft"}.
func Block(ctx context.Context, nftArgv []string, addr netip.Addr) error {
	ports := make([]string, len(Ports))
	for i, p := range Ports {
		ports[i] = strconv.Itoa(int(p))
	}
	script := fmt.Sprintf(`add table inet %[1]s
add set inet %[1]s clients4 { type ipv4_addr; comment "file-server clients cut off by killswitch"; }
add set inet %[1]s clients6 { type ipv6_addr; comment "file-server clients cut off by killswitch"; }
add chain inet %[1]s input { type filter hook input priority -10; policy accept; }
flush chain inet %[1]s input
add rule inet %[1]s input ip saddr @clients4 tcp dport { %[2]s } drop
add rule inet %[1]s input ip6 saddr @clients6 tcp dport { %[2]s } drop
add element inet %[1]s %[3]s { %[4]s }
`, table, strings.Join(ports, ", "), set(addr), addr.Unmap())
	return nft.Run(ctx, nftArgv, script)
}

// Release lets addr reach the file-sharing ports again.
func Release(ctx context.Context, nftArgv []string, addr netip.Addr) error {
	blocked, err := List(ctx, nftArgv)
	if err != nil {
		return err
	}
	addr = addr.Unmap()
	for _, b := range blocked {
		if b == addr {
			return nft.Run(ctx, nftArgv, fmt.Sprintf("delete element inet %s %s { %s }\n", table, set(addr), addr))
		}
	}
	return fmt.Errorf("cutoff: %s is not cut off", addr)
}

// List returns the addresses cut off now (none if the table is missing).
func List(ctx context.Context, nftArgv []string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, s := range []string{"clients4", "clients6"} {
		data, err := nft.Output(ctx, nftArgv, "-j", "list", "set", "inet", table, s)
		if err != nil {
			if strings.Contains(err.Error(), "No such file or directory") {
				return nil, nil // never cut anyone off
			}
			return nil, err
		}
		addrs, err := parseSet(data)
		if err != nil {
			return nil, fmt.Errorf("cutoff: nft -j list set %s: %w", s, err)
		}
		out = append(out, addrs...)
	}
	return out, nil
}

func set(addr netip.Addr) string {
	if addr.Unmap().Is4() {
		return "clients4"
	}
	return "clients6"
}

// parseSet reads the elements of one set from `nft -j list set` output.
func parseSet(data []byte) ([]netip.Addr, error) {
	var doc struct {
		Nftables []struct {
			Set *struct {
				Elem []json.RawMessage `json:"elem"`
			} `json:"set"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, o := range doc.Nftables {
		if o.Set == nil {
			continue
		}
		for _, e := range o.Set.Elem {
			var s string
			if err := json.Unmarshal(e, &s); err != nil {
				return nil, fmt.Errorf("element %s: not an address", e)
			}
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, err
			}
			out = append(out, a)
		}
	}
	return out, nil
}

// Serving lists the processes running executable that serve addr, such as
// the other connections one client opened to smbd: a client is cut off
// from all of them, not just the one caught writing.
func Serving(proc, executable string, addr netip.Addr) []int {
	ents, err := os.ReadDir(proc)
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if exe, err := os.Readlink(proc + "/" + e.Name() + "/exe"); err != nil || exe != executable {
			continue
		}
		if peer, err := Peer(proc, pid); err == nil && peer == addr {
			pids = append(pids, pid)
		}
	}
	return pids
}
