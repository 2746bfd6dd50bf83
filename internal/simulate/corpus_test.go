package simulate

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCorpusRoundTrip(t *testing.T) {
	dir := t.TempDir()
	m, err := MakeCorpus(dir, 24, 7)
	if err != nil {
		t.Fatal(err)
	}
	got, err := LoadManifest(dir)
	if err != nil || len(got.Files) != len(m.Files) || len(Damage(dir, got)) != 0 || len(Extra(dir, got)) != 0 {
		t.Fatalf("manifest %d files, damage %v, extra %v, err %v", len(got.Files), Damage(dir, got), Extra(dir, got), err)
	}
}

func TestManifestNamingOutsideTheCorpusIsRefused(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, Marker), []byte(`{"generator":"killswitch","files":{"../../etc/passwd":"x"}}`), 0o644)
	if _, err := LoadManifest(dir); err == nil {
		t.Fatal("a manifest naming ../../etc/passwd was accepted")
	}
}

func FuzzLoadManifest(f *testing.F) {
	f.Add([]byte(`{"generator":"killswitch","files":{"a.txt":"00"}}`))
	f.Add([]byte(`{"generator":"killswitch","files":{"/abs":"00"}}`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		os.WriteFile(filepath.Join(dir, Marker), b, 0o644)
		m, err := LoadManifest(dir)
		if err != nil {
			return
		}
		for rel := range m.Files {
			if !filepath.IsLocal(rel) {
				t.Fatalf("accepted %q", rel)
			}
		}
	})
}
