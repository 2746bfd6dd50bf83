package smblab

import (
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/killswitch-dev/killswitch/internal/samba"
	"github.com/killswitch-dev/killswitch/internal/smb"
)

// LabSpec says how many hosts of each kind a lab holds.
type LabSpec struct {
	SambaEach    int // per Samba configuration (SMB1 on, default, signing required)
	RecordedEach int // per recorded Windows host
	HostileEach  int // per hostile behaviour
	Closed       int // addresses where nothing listens
	Filtered     int // addresses whose packets are dropped
	// Slow is how long hostile peers hold a connection; keep it above the
	// scan's time-out.
	Slow time.Duration
}

// Host is one lab address and what a correct scan says about it on 445.
type Host struct {
	Addr   netip.Addr
	Kind   string
	State  string // open, closed, filtered
	Expect Expect
}

// Lab is a set of peers on 127.42.0.0/16.
type Lab struct {
	Hosts   []Host
	server  *Server
	sambas  []*samba.Server
	nft     bool
	dropped netip.Prefix
}

// Len is the number of hosts.
func (l *Lab) Len() int { return len(l.Hosts) }

// Addrs lists every host address.
func (l *Lab) Addrs() []netip.Addr {
	out := make([]netip.Addr, len(l.Hosts))
	for i, h := range l.Hosts {
		out[i] = h.Addr
	}
	return out
}

// StartLab starts every peer. dir holds Samba's state; pcaps is
// PcapDir(). It needs root (port 445, addresses on lo, nftables).
func StartLab(dir, pcaps string, spec LabSpec) (lab *Lab, err error) {
	l := &Lab{server: NewServer()}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	block := byte(1)
	next := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{127, 42, block, byte(i + 1)}) }

	sambaDialects := []string{"2.0.2", "2.1", "3.0", "3.0.2", "3.1.1"}
	withSMB1 := append([]string{smb.DialectNTLM}, sambaDialects...)
	sambas := []struct {
		kind, global string
		expect       Expect
	}{
		{"samba-smb1", samba.SMB1, Expect{b(true), withSMB1, "disabled", "enabled", "patched", "invalid-handle", b(false), ""}},
		{"samba-default", samba.Default, Expect{b(false), sambaDialects, "", "enabled", "not-applicable", "smb1-disabled", nil, ""}},
		{"samba-signing-required", samba.Signing, Expect{b(true), withSMB1, "required", "required", "patched", "invalid-handle", b(false), ""}},
	}
	for _, s := range sambas {
		if spec.SambaEach == 0 {
			break
		}
		var addrs []netip.Addr
		for i := range spec.SambaEach {
			addrs = append(addrs, next(i))
			l.Hosts = append(l.Hosts, Host{next(i), s.kind, "open", s.expect})
		}
		sm, err := samba.Start(filepath.Join(dir, s.kind), addrs, s.global)
		if err != nil {
			return nil, err
		}
		l.sambas = append(l.sambas, sm)
		block++
	}
	for _, r := range RecordedHosts(pcaps) {
		if spec.RecordedEach == 0 {
			break
		}
		peer, err := NewReplay(r.Name, r.Implant, r.Sources...)
		if err != nil {
			return nil, err
		}
		for i := range spec.RecordedEach {
			if _, err := l.server.Listen(next(i), 445, peer); err != nil {
				return nil, err
			}
			l.Hosts = append(l.Hosts, Host{next(i), r.Name, "open", r.Expect})
		}
		block++
	}
	for _, h := range HostileHosts(spec.Slow) {
		if spec.HostileEach == 0 {
			break
		}
		for i := range spec.HostileEach {
			if _, err := l.server.Listen(next(i), 445, h.Peer); err != nil {
				return nil, err
			}
			l.Hosts = append(l.Hosts, Host{next(i), "hostile-" + h.Name, "open", h.Expect})
		}
		block++
	}
	if spec.Closed > 250 {
		return nil, fmt.Errorf("smblab: at most 250 closed hosts")
	}
	for i := range spec.Closed {
		l.Hosts = append(l.Hosts, Host{next(i), "closed", "closed", Expect{MS17: "not-applicable", MS17Reason: "port-closed"}})
	}
	if spec.Filtered > 0 {
		// 127.43.0.0/16, dropped as a whole: room for 65,000 silent hosts
		l.dropped = netip.MustParsePrefix("127.43.0.0/16")
		if err := nftDrop(l.dropped); err != nil {
			return nil, err
		}
		l.nft = true
		for i := range spec.Filtered {
			a := netip.AddrFrom4([4]byte{127, 43, byte((i + 1) >> 8), byte(i + 1)})
			l.Hosts = append(l.Hosts, Host{a, "filtered", "filtered", Expect{MS17: "unknown", MS17Reason: "port-filtered"}})
		}
	}
	return l, nil
}

// Close stops every peer and removes the firewall rule.
func (l *Lab) Close() error {
	var errs []error
	l.server.Close()
	for _, s := range l.sambas {
		errs = append(errs, s.Close())
	}
	if l.nft {
		errs = append(errs, nftRemove())
	}
	return errors.Join(errs...)
}

const nftTable = "killswitch_smblab"

// nftDrop silently drops SMB connection attempts to p, which makes every
// address in it look like a host behind a firewall.
func nftDrop(p netip.Prefix) error {
	nftRemove()
	rules := fmt.Sprintf(`table inet %s {
	chain out {
		type filter hook output priority 0; policy accept;
		ip daddr %s tcp dport { 139, 445 } drop
	}
}
`, nftTable, p)
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft: %v: %s", err, out)
	}
	return nil
}

func nftRemove() error {
	out, err := exec.Command("nft", "delete", "table", "inet", nftTable).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "No such file") && !strings.Contains(string(out), "does not exist") {
		return fmt.Errorf("nft: %v: %s", err, out)
	}
	return nil
}
