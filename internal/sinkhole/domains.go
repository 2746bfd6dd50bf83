package sinkhole

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// KnownDomains are WannaCry's kill-switch domains (May 2017): the original,
// then the variants seen within days of it.
var KnownDomains = []string{
	"iuqerfsodp9ifjaposdfjhgosurijfaewrwergwea.com", // the original; queried as www.
	"ifferfsodp9ifjaposdfjhgosurijfaewrwergwea.com", // variant, 14 May 2017
	"ayylmaotjhsstasdfasdfasdfasdfasdfasdfasdf.com",
	"iuqssfsodp9ifjaposdfjhgosurijfaewrwergwea.com",
}

// ErrDomains marks an unusable domain list.
var ErrDomains = errors.New("domain list")

// Domains is a set of kill-switch names. A listed name matches itself and
// every name under it (www.NAME), case-insensitively.
type Domains struct {
	names map[string]bool // canonical FQDNs, lower case
}

// NewDomains builds the set from the known domains plus extra.
func NewDomains(extra ...string) (*Domains, error) {
	d := &Domains{names: map[string]bool{}}
	for _, n := range append(append([]string{}, KnownDomains...), extra...) {
		if err := d.add(n); err != nil {
			return nil, err
		}
	}
	return d, nil
}

func (d *Domains) add(n string) error {
	n = strings.TrimSpace(n)
	if _, ok := dns.IsDomainName(n); !ok || n == "" || n == "." || strings.ContainsAny(n, " \t*/\\") || len(n) > 253 {
		return fmt.Errorf("%w: %q is not a domain name", ErrDomains, n)
	}
	if dns.CountLabel(n) < 2 {
		return fmt.Errorf("%w: %q is a top-level domain; sinking it would answer a whole TLD", ErrDomains, n)
	}
	d.names[dns.CanonicalName(n)] = true
	return nil
}

// ReadDomains reads extra names, one per line, "#" starts a comment.
func ReadDomains(r io.Reader) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text, _, _ := strings.Cut(sc.Text(), "#")
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		if _, err := NewDomains(text); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		out = append(out, text)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDomains, err)
	}
	return out, nil
}

// Match reports whether name (a DNS name or an HTTP host) is a kill-switch
// name, and returns the listed domain it falls under.
func (d *Domains) Match(name string) (string, bool) {
	if name == "" {
		return "", false
	}
	name = dns.CanonicalName(name)
	for i, end := 0, false; !end; i, end = dns.NextLabel(name, i) {
		if d.names[name[i:]] {
			return strings.TrimSuffix(name[i:], "."), true
		}
	}
	return "", false
}

// List returns the names, sorted.
func (d *Domains) List() []string {
	out := make([]string, 0, len(d.names))
	for n := range d.names {
		out = append(out, strings.TrimSuffix(n, "."))
	}
	slices.Sort(out)
	return out
}
