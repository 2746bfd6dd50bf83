package scan

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func addrs(t *Targets) []string {
	var out []string
	t.Each(func(a netip.Addr) bool { out = append(out, a.String()); return true })
	return out
}

func TestTargets(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name             string
		include, exclude []string
		special          bool
		want             string
		skipped          uint64
	}{
		{"single", []string{"10.0.0.1"}, nil, false, "10.0.0.1", 0},
		{"cidr", []string{"10.0.0.0/30"}, nil, false, "10.0.0.0 10.0.0.1 10.0.0.2 10.0.0.3", 0},
		{"short range", []string{"10.0.0.250-252"}, nil, false, "10.0.0.250 10.0.0.251 10.0.0.252", 0},
		{"full range", []string{"10.0.0.255-10.0.1.1"}, nil, false, "10.0.0.255 10.0.1.0 10.0.1.1", 0},
		{"overlaps once", []string{"10.0.0.0/31", "10.0.0.1", "10.0.0.1-2"}, nil, false, "10.0.0.0 10.0.0.1 10.0.0.2", 0},
		{"exclusions", []string{"10.0.0.0/29"}, []string{"10.0.0.2-5", "10.0.0.7"}, false, "10.0.0.0 10.0.0.1 10.0.0.6", 0},
		{"special skipped in a range", []string{"223.255.255.254/31", "224.0.0.0/31"}, nil, false, "223.255.255.254 223.255.255.255", 2},
		{"special allowed", []string{"224.0.0.1"}, nil, true, "224.0.0.1", 0},
		{"ipv6", []string{"fd00::/127"}, nil, false, "fd00:: fd00::1", 0},
		{"mapped", []string{"::ffff:10.1.2.3"}, nil, false, "10.1.2.3", 0},
		{"localhost by name", []string{"localhost"}, []string{"::1"}, false, "127.0.0.1", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NewTargets(ctx, TargetOptions{Include: tc.include, Exclude: tc.exclude, AllowSpecial: tc.special})
			if err != nil {
				t.Fatal(err)
			}
			if s := strings.Join(addrs(got), " "); s != tc.want || got.Len() != uint64(len(addrs(got))) {
				t.Errorf("got %q (Len %d), want %q", s, got.Len(), tc.want)
			}
			if got.Skipped != tc.skipped {
				t.Errorf("skipped %d, want %d", got.Skipped, tc.skipped)
			}
		})
	}
}

func TestTargetErrors(t *testing.T) {
	for _, spec := range []string{"", "10.0.0.1/33", "10.0.0.5/24", "10.0.0.9-3", "10.0.0.1-300", "10.0.0.1-fe80::1",
		"fd00::/64", "0.0.0.0/0", "224.0.0.1", "255.255.255.255", "bad host!", "x.invalid", strings.Repeat("a", 300)} {
		_, err := NewTargets(context.Background(), TargetOptions{Include: []string{spec}})
		if !errors.Is(err, ErrTargets) {
			t.Errorf("%q: %v, want a targets error", spec, err)
		}
	}
	if _, err := NewTargets(context.Background(), TargetOptions{}); !errors.Is(err, ErrTargets) {
		t.Errorf("no targets: %v", err)
	}
}

func TestReadTargetFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "targets")
	os.WriteFile(p, []byte("# lab\n10.0.0.1, 10.0.0.2  10.0.0.3 # trailing\n\n\t10.0.1.0/31\n"), 0o644)
	got, err := ReadTargetFile(p)
	if err != nil || strings.Join(got, " ") != "10.0.0.1 10.0.0.2 10.0.0.3 10.0.1.0/31" {
		t.Errorf("%q %v", got, err)
	}
	if _, err := ReadTargetFile(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, ErrTargets) {
		t.Errorf("missing file: %v", err)
	}
}

// noDNS fails every lookup at once, so fuzzed host names stay off the network.
var noDNS = &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
	return nil, errors.New("no DNS in this test")
}}

// FuzzTargets: any target text gives targets or an error, never a panic,
// and never more addresses than the limit.
func FuzzTargets(f *testing.F) {
	for _, s := range []string{"10.0.0.1", "10.0.0.0/24", "10.0.0.1-5", "fd00::/120", "1.2.3.4-1.2.4.4", "a-b", "::ffff:1.2.3.4/120"} {
		f.Add(s, "10.0.0.3")
	}
	f.Fuzz(func(t *testing.T, include, exclude string) {
		tg, err := NewTargets(context.Background(), TargetOptions{Include: []string{include}, Exclude: []string{exclude}, Resolver: noDNS})
		if err != nil {
			return
		}
		if tg.Len() > MaxTargets {
			t.Fatalf("%d targets", tg.Len())
		}
		n := uint64(0)
		tg.Each(func(netip.Addr) bool { n++; return n < 1000 })
		if n == 0 && tg.Len() > 0 {
			t.Fatal("Len > 0 but nothing to walk")
		}
	})
}
