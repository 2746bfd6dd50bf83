package vault

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/killswitch-dev/killswitch/internal/detector"
)

func open(t *testing.T) *Vault {
	t.Helper()
	v, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

func readBlob(t *testing.T, v *Vault, h string) ([]byte, error) {
	t.Helper()
	rc, err := v.OpenBlob(h)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func TestBlobsDeduplicateAndRoundTrip(t *testing.T) {
	v := open(t)
	small := []byte(strings.Repeat("discharge summary\n", 100))
	big := bytes.Repeat([]byte("0123456789abcdef"), (smallFile/16)+1000) // streams through a temp file
	for _, content := range [][]byte{small, big, {}} {
		h1, n, err := v.StoreBlob(bytes.NewReader(content), int64(len(content)))
		if err != nil || n != int64(len(content)) {
			t.Fatal(err, n)
		}
		h2, _, _ := v.StoreBlob(bytes.NewReader(content), -1)
		if h1 != h2 {
			t.Fatal("same content, different hashes")
		}
		got, err := readBlob(t, v, h1)
		if err != nil || !bytes.Equal(got, content) {
			t.Fatalf("round trip of %d bytes: %v", len(content), err)
		}
	}
	r, err := v.Check()
	if err != nil || !r.OK() || r.Blobs != 3 {
		t.Fatalf("check: %+v %v", r, err)
	}
}

func TestCorruptBlobIsDetected(t *testing.T) {
	v := open(t)
	h, _, _ := v.StoreBlob(strings.NewReader("precious"), 8)
	v.Add(Version{Path: "/srv/a", Time: time.Now(), Kind: Content, Hash: h, Size: 8})
	// Replace the blob with a valid zstd frame of other content.
	other, _, _ := v.StoreBlob(strings.NewReader("tampered"), 8)
	b, _ := os.ReadFile(v.blobPath(other))
	os.WriteFile(v.blobPath(h), b, 0o600)
	if _, err := readBlob(t, v, h); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("tampered blob read: %v", err)
	}
	os.WriteFile(v.blobPath(h), []byte("garbage"), 0o600)
	if _, err := readBlob(t, v, h); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("garbage blob read: %v", err)
	}
	r, _ := v.Check()
	if r.OK() || len(r.Corrupt) != 1 {
		t.Fatalf("check missed the corrupt blob: %+v", r)
	}
	os.Remove(v.blobPath(h))
	if r, _ := v.Check(); len(r.Missing) != 1 {
		t.Fatalf("check missed the missing blob: %+v", r)
	}
}

func TestStateAtAndPrune(t *testing.T) {
	v := open(t)
	t0 := time.Now().Add(-48 * time.Hour)
	h1, _, _ := v.StoreBlob(strings.NewReader("v1"), 2)
	h2, _, _ := v.StoreBlob(strings.NewReader("v2"), 2)
	v.Add(Version{Path: "/srv/d/a", Time: t0, Kind: Content, Hash: h1},
		Version{Path: "/srv/d/a", Time: t0.Add(time.Hour), Kind: Content, Hash: h2},
		Version{Path: "/srv/d/b", Time: t0, Kind: Content, Hash: h1},
		Version{Path: "/srv/d/b", Time: t0.Add(2 * time.Hour), Kind: Deleted},
		Version{Path: "/srv/dx/c", Time: t0, Kind: Content, Hash: h1})
	st, err := v.StateAt([]string{"/srv/d"}, t0.Add(30*time.Minute))
	if err != nil || len(st) != 2 || st[0].Hash != h1 || st[1].Hash != h1 {
		t.Fatalf("state at t0+30m: %+v %v", st, err)
	}
	st, _ = v.StateAt([]string{"/srv/d"}, t0.Add(3*time.Hour))
	if len(st) != 2 || st[0].Hash != h2 || st[1].Kind != Deleted {
		t.Fatalf("state at t0+3h: %+v", st)
	}
	n, err := v.Prune(time.Hour, 0, time.Now())
	if err != nil || n != 2 { // a@v1 and b@v1; b's deletion is its newest row, c is newest
		t.Fatalf("prune removed %d: %v", n, err)
	}
	if _, err := readBlob(t, v, h1); err != nil { // still named by /srv/dx/c
		t.Fatal("blob still in use was deleted")
	}
}

// TestPruneKeepsWhatAnOpenIncidentNeeds: an old version that an open
// incident would restore survives retention; once restored, it may go.
func TestPruneKeepsWhatAnOpenIncidentNeeds(t *testing.T) {
	v := open(t)
	old := time.Now().Add(-90 * 24 * time.Hour)
	h1, _, _ := v.StoreBlob(strings.NewReader("before the attack"), 17)
	h2, _, _ := v.StoreBlob(strings.NewReader("ciphertext"), 10)
	v.Add(Version{Path: "/srv/a", Time: old, Kind: Content, Hash: h1},
		Version{Path: "/srv/a", Time: old.Add(time.Hour), Kind: Content, Hash: h2})
	inc := Incident{ID: "ks-1", Opened: old, State: StateOpen, Files: []detector.Record{{Op: detector.Write, Path: "/srv/a", PreHash: h1}}}
	v.SaveIncident(inc)
	if n, _ := v.Prune(24*time.Hour, 0, time.Now()); n != 0 {
		t.Fatalf("pruned %d versions an open incident needs", n)
	}
	inc.State = StateRestored
	v.SaveIncident(inc)
	if n, _ := v.Prune(24*time.Hour, 0, time.Now()); n != 1 {
		t.Fatalf("pruned %d after the incident was restored, want 1", n)
	}
}

// FuzzIncidentBody: whatever an incident row holds, loading it returns an
// error or an incident, never a panic.
func FuzzIncidentBody(f *testing.F) {
	v, err := Open(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { v.Close() })
	f.Add([]byte(`{"id":"x","files":[{"op":"write","path":"/a","pre_hash":"00"}]}`))
	f.Add([]byte(`{"files":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if _, err := v.db.Exec(`INSERT OR REPLACE INTO incidents(id, opened, state, body) VALUES('f', 0, 'open', ?)`, string(body)); err != nil {
			t.Fatal(err)
		}
		v.Incident("f")
		v.Incidents()
	})
}

func TestOpenRejectsForeignDatabase(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "index.db"), []byte("not a database at all, just text"), 0o600)
	if _, err := Open(dir); err == nil {
		t.Fatal("opened a garbage index")
	}
}

// FuzzOpenBlob: whatever bytes sit in a blob file, reading it returns an
// error or the content whose hash names it; never a panic.
func FuzzOpenBlob(f *testing.F) {
	v, err := Open(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { v.Close() })
	h, _, _ := v.StoreBlob(strings.NewReader("seed content"), 12)
	good, _ := os.ReadFile(v.blobPath(h))
	f.Add(good)
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		os.WriteFile(v.blobPath(h), b, 0o600)
		rc, err := v.OpenBlob(h)
		if err != nil {
			return
		}
		got, err := io.ReadAll(io.LimitReader(rc, 1<<20))
		rc.Close()
		if err == nil && string(got) != "seed content" {
			t.Fatalf("read %q without error from a blob named by another hash", got)
		}
	})
}
