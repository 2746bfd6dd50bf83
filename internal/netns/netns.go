package netns

import (
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"sync/atomic"
	"time"
)

// NS is one network namespace made by New. The zero *NS (nil) stands for
// the namespace this process runs in.
type NS struct {
	Name  string
	links atomic.Int32
}

// New makes a namespace named prefix plus a unique suffix, with its
// loopback up.
func New(prefix string) (*NS, error) {
	n := &NS{Name: fmt.Sprintf("%s%05d", prefix, time.Now().UnixNano()%100000)}
	if err := ip("netns", "add", n.Name); err != nil {
		return nil, err
	}
	if err := ip("netns", "exec", n.Name, "ip", "link", "set", "lo", "up"); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

// Close removes the namespace, its links and their peers.
func (n *NS) Close() error { return ip("netns", "del", n.Name) }

// Argv prefixes argv so that it runs inside n (unchanged for nil).
func (n *NS) Argv(argv ...string) []string {
	if n == nil {
		return argv
	}
	return append([]string{"ip", "netns", "exec", n.Name}, argv...)
}

// Command is exec.Command inside n.
func (n *NS) Command(name string, args ...string) *exec.Cmd {
	argv := n.Argv(append([]string{name}, args...)...)
	return exec.Command(argv[0], argv[1:]...)
}

// Link joins a and b (a may be nil: this namespace) with a veth pair on
// subnet, IPv4 or IPv6: a gets its first address, b its second.
func Link(a, b *NS, subnet netip.Prefix) (aAddr, bAddr netip.Addr, err error) {
	if b == nil {
		return aAddr, bAddr, fmt.Errorf("netns: Link needs a namespace on its b side")
	}
	aAddr = subnet.Masked().Addr().Next()
	bAddr = aAddr.Next()
	i := b.links.Add(1)
	out, in := fmt.Sprintf("%sa%d", b.Name, i), fmt.Sprintf("%sb%d", b.Name, i)
	if len(out) > 15 {
		return aAddr, bAddr, fmt.Errorf("netns: interface name %s is too long", out)
	}
	bits := fmt.Sprint("/", subnet.Bits())
	add := []string{"link", "add", out}
	if a != nil {
		add = append(add, "netns", a.Name)
	}
	var nodad []string
	if subnet.Addr().Is6() {
		nodad = []string{"nodad"} // usable at once, not after duplicate detection
	}
	steps := [][]string{
		append(add, "type", "veth", "peer", "name", in, "netns", b.Name),
		append(a.ipArgs("addr", "add", aAddr.String()+bits, "dev", out), nodad...),
		a.ipArgs("link", "set", out, "up"),
		append(b.ipArgs("addr", "add", bAddr.String()+bits, "dev", in), nodad...),
		b.ipArgs("link", "set", in, "up"),
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return aAddr, bAddr, err
		}
	}
	return aAddr, bAddr, nil
}

// ipArgs are the arguments of ip that run an ip command inside n.
func (n *NS) ipArgs(args ...string) []string {
	if n == nil {
		return args
	}
	return append([]string{"-n", n.Name}, args...)
}

func ip(args ...string) error {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
