package config

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	settings, args, err := Parse([]byte(`# the guard on the ward file server
protect:
  - /srv/wards
  - /srv/pharmacy
vault: /var/lib/killswitch/vault
json: true
hub-interval: 30s
file-servers: [smbd, ksmbd]
`), "protect")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(args, []string{"/srv/wards", "/srv/pharmacy"}) {
		t.Errorf("protect = %v", args)
	}
	want := []Setting{{"vault", "/var/lib/killswitch/vault", 5}, {"json", "true", 6}, {"hub-interval", "30s", 7}, {"file-servers", "smbd,ksmbd", 8}}
	if !slices.Equal(settings, want) {
		t.Errorf("settings = %+v\nwant %+v", settings, want)
	}
	if s, a, err := Parse([]byte("protect: /srv\n"), "protect"); err != nil || len(s) != 0 || !slices.Equal(a, []string{"/srv"}) {
		t.Errorf("one folder: %v %v %v", s, a, err)
	}
	if s, a, err := Parse([]byte("# nothing yet\n"), "protect"); err != nil || s != nil || a != nil {
		t.Errorf("empty file: %v %v %v", s, a, err)
	}
}

func TestParseRefuses(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"- a\n- b\n", "line 1: want a mapping"},
		{"vault: /a\nvault: /b\n", "line 2: vault is given twice"},
		{"hub:\n  url: https://x\n", "line 2: hub: want a value or a list"},
		{"vault:\n", "vault: no value"},
		{"exec-mounts: [/a, [/b]]\n", "a list may hold only values"},
		{"file-servers: [smbd, 'a,b']\n", "holds a comma"},
		{"base: &b /srv\nvault: *b\n", "aliases are not allowed"},
		{"vault: [unclosed\n", "invalid configuration"},
		{"? [a, b]\n: c\n", "a key must be a name"},
		{"vault: /v\n" + strings.Repeat("#", MaxSize), "a configuration is at most"},
	} {
		_, _, err := Parse([]byte(tc.doc), "protect")
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", tc.doc, err, tc.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("protect: [/srv]\nvault: /v\njson: true\n"))
	f.Add([]byte("a: &x 1\nb: *x\n"))
	f.Add([]byte("- 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		settings, _, err := Parse(data, "protect")
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		seen := map[string]bool{}
		for _, s := range settings {
			if s.Key == "" || s.Key == "protect" || seen[s.Key] {
				t.Fatalf("bad setting %+v in %+v", s, settings)
			}
			seen[s.Key] = true
		}
	})
}
