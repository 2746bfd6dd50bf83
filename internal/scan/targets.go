package scan

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
)

// MaxTargets bounds one scan (a /8 is 16.7 million addresses); an IPv6
// prefix shorter than /104 is refused rather than walked for ever.
const MaxTargets = 1 << 24

// ErrTargets marks a target list the scanner cannot use.
var ErrTargets = errors.New("targets")

// special lists ranges a scan must not touch unless the operator says so:
// they are not hosts (multicast, broadcast, "this network"), or they belong
// to no one's network (documentation, benchmarking, reserved).
var special = []struct {
	prefix netip.Prefix
	why    string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), `"this network"`},
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation"},
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved and broadcast"},
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("2001:db8::/32"), "documentation"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

// span is an inclusive range of addresses of one family.
type span struct{ lo, hi netip.Addr }

func (s span) size() *big.Int {
	d := new(big.Int).Sub(new(big.Int).SetBytes(s.hi.AsSlice()), new(big.Int).SetBytes(s.lo.AsSlice()))
	return d.Add(d, big.NewInt(1))
}

func prefixSpan(p netip.Prefix) span {
	p = p.Masked()
	lo := p.Addr()
	b := lo.AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	hi, _ := netip.AddrFromSlice(b)
	return span{lo, hi}
}

// Targets is a set of addresses to scan: what was asked for, less the
// exclusions and the special ranges, each address once.
type Targets struct {
	spans   []span
	names   map[netip.Addr]string
	Skipped uint64 // addresses dropped because they are in special ranges
	count   uint64
}

// TargetOptions says how to build Targets.
type TargetOptions struct {
	Include      []string // addresses, CIDRs, ranges (a.b.c.d-e or a.b.c.d-a.b.c.e), host names
	Exclude      []string
	AllowSpecial bool // scan special ranges too
	Resolver     *net.Resolver
}

// ReadTargetFile reads specs from a file ("-" is standard input): one or
// more per line, separated by spaces or commas, "#" starts a comment.
func ReadTargetFile(path string) ([]string, error) {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrTargets, err)
		}
		defer f.Close()
		r = f
	}
	var out []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		out = append(out, strings.FieldsFunc(line, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })...)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrTargets, path, err)
	}
	return out, nil
}

// NewTargets parses and resolves the specs.
func NewTargets(ctx context.Context, o TargetOptions) (*Targets, error) {
	t := &Targets{names: map[netip.Addr]string{}}
	if o.Resolver == nil {
		o.Resolver = net.DefaultResolver
	}
	var inc, exc []span
	for _, s := range o.Include {
		sp, err := t.parse(ctx, o.Resolver, s, true)
		if err != nil {
			return nil, err
		}
		if !o.AllowSpecial && len(sp) == 1 && sp[0].lo == sp[0].hi {
			if why := specialRange(sp[0].lo); why != "" {
				return nil, fmt.Errorf("%w: %s is %s, not a host to scan (--allow-special to scan it anyway)", ErrTargets, s, why)
			}
		}
		inc = append(inc, sp...)
	}
	if len(inc) == 0 {
		return nil, fmt.Errorf("%w: nothing to scan", ErrTargets)
	}
	for _, s := range o.Exclude {
		sp, err := t.parse(ctx, o.Resolver, s, false)
		if err != nil {
			return nil, err
		}
		exc = append(exc, sp...)
	}
	t.spans = subtract(merge(inc), merge(exc))
	if !o.AllowSpecial {
		var sp []span
		for _, s := range special {
			sp = append(sp, prefixSpan(s.prefix))
		}
		left := subtract(t.spans, merge(sp))
		t.Skipped = new(big.Int).Sub(total(t.spans), total(left)).Uint64()
		t.spans = left
	}
	n := total(t.spans)
	if !n.IsUint64() || n.Uint64() > MaxTargets {
		return nil, fmt.Errorf("%w: %s addresses to scan; the limit is %d", ErrTargets, n, MaxTargets)
	}
	t.count = n.Uint64()
	return t, nil
}

func specialRange(a netip.Addr) string {
	for _, s := range special {
		if s.prefix.Contains(a) {
			return s.why
		}
	}
	return ""
}

// Len is the number of addresses.
func (t *Targets) Len() uint64 { return t.count }

// Name is the host name an address was given as, or "".
func (t *Targets) Name(a netip.Addr) string { return t.names[a] }

// Each calls fn with every address in order until fn returns false.
func (t *Targets) Each(fn func(netip.Addr) bool) {
	for _, s := range t.spans {
		for a := s.lo; ; a = a.Next() {
			if !fn(a) || a == s.hi {
				break
			}
		}
	}
}

func (t *Targets) parse(ctx context.Context, r *net.Resolver, s string, remember bool) ([]span, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("%w: empty target", ErrTargets)
	}
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap()
		return []span{{a, a}}, nil
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%w: %q is not a CIDR range: %v", ErrTargets, s, err)
		}
		if p.Addr().Is6() && p.Bits() < 104 {
			return nil, fmt.Errorf("%w: %s is too large to walk (IPv6 prefixes must be /104 or longer)", ErrTargets, s)
		}
		if p.Masked() != p {
			return nil, fmt.Errorf("%w: %s has host bits set; did you mean %s?", ErrTargets, s, p.Masked())
		}
		return []span{prefixSpan(p)}, nil
	}
	if lo, hi, ok := strings.Cut(s, "-"); ok {
		if a, err := netip.ParseAddr(lo); err == nil {
			b, err := netip.ParseAddr(hi)
			if err != nil && a.Is4() && !strings.Contains(hi, ".") { // 10.0.0.1-50
				bs := a.As4()
				var last int
				if _, e := fmt.Sscanf(hi, "%d", &last); e == nil && last >= 0 && last <= 255 && fmt.Sprint(last) == hi {
					bs[3] = byte(last)
					b, err = netip.AddrFrom4(bs), nil
				}
			}
			if err != nil || a.Is4() != b.Is4() || b.Less(a) {
				return nil, fmt.Errorf("%w: %q is not an address range (a.b.c.d-e or a.b.c.d-w.x.y.z, low to high)", ErrTargets, s)
			}
			return []span{{a, b}}, nil
		}
	}
	if !validHostname(s) {
		return nil, fmt.Errorf("%w: %q is not an address, a range or a host name", ErrTargets, s)
	}
	addrs, err := r.LookupNetIP(ctx, "ip", s)
	if err != nil {
		return nil, fmt.Errorf("%w: cannot resolve %s: %v", ErrTargets, s, err)
	}
	var out []span
	for _, a := range addrs {
		a = a.Unmap()
		if remember {
			if _, ok := t.names[a]; !ok {
				t.names[a] = s
			}
		}
		out = append(out, span{a, a})
	}
	return out, nil
}

func validHostname(s string) bool {
	if len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// merge sorts spans and joins those that overlap or touch.
func merge(in []span) []span {
	s := slices.Clone(in)
	slices.SortFunc(s, func(a, b span) int { return a.lo.Compare(b.lo) })
	var out []span
	for _, x := range s {
		if n := len(out); n > 0 && out[n-1].hi.Is4() == x.lo.Is4() && (x.lo.Compare(out[n-1].hi) <= 0 || out[n-1].hi.Next() == x.lo) {
			if x.hi.Compare(out[n-1].hi) > 0 {
				out[n-1].hi = x.hi
			}
			continue
		}
		out = append(out, x)
	}
	return out
}

// subtract removes the (merged) spans ex from the (merged) spans in.
func subtract(in, ex []span) []span {
	var out []span
	for _, s := range in {
		pieces := []span{s}
		for _, e := range ex {
			if e.lo.Is4() != s.lo.Is4() {
				continue
			}
			var next []span
			for _, p := range pieces {
				if e.hi.Less(p.lo) || p.hi.Less(e.lo) {
					next = append(next, p)
					continue
				}
				if p.lo.Less(e.lo) {
					next = append(next, span{p.lo, e.lo.Prev()})
				}
				if e.hi.Less(p.hi) {
					next = append(next, span{e.hi.Next(), p.hi})
				}
			}
			pieces = next
		}
		out = append(out, pieces...)
	}
	return out
}

func total(s []span) *big.Int {
	n := new(big.Int)
	for _, x := range s {
		n.Add(n, x.size())
	}
	return n
}
