package restore

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/killswitch-dev/killswitch/internal/detector"
	"github.com/killswitch-dev/killswitch/internal/vault"
)

// setup makes a vault holding "original" for root/docs/a.txt and an
// incident that encrypted it in place and dropped a note.
func setup(t *testing.T) (v *vault.Vault, root string, inc vault.Incident) {
	t.Helper()
	base := t.TempDir()
	root = filepath.Join(base, "share")
	os.MkdirAll(filepath.Join(root, "docs"), 0o755)
	v, err := vault.Open(filepath.Join(base, "vault"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	orig := "original content\n"
	h, _, err := v.StoreBlob(strings.NewReader(orig), int64(len(orig)))
	if err != nil {
		t.Fatal(err)
	}
	a := filepath.Join(root, "docs", "a.txt")
	mtime := time.Date(2017, 5, 11, 9, 0, 0, 0, time.UTC)
	v.Add(vault.Version{Path: a, Time: time.Now().Add(-time.Hour), Kind: vault.Content, Hash: h, Size: int64(len(orig)),
		Mode: 0o640, UID: os.Getuid(), GID: os.Getgid(), MTime: mtime})
	os.WriteFile(a, []byte("\x8f\x01ciphertext"), 0o640)
	note := filepath.Join(root, "docs", "@Please_Read_Me@.txt")
	os.WriteFile(note, []byte("pay"), 0o644)
	frozen := time.Now().Add(time.Second) // files written above predate the freeze
	inc = vault.Incident{ID: "ks-test", Opened: frozen, FrozenAt: frozen, State: vault.StateOpen,
		Files: []detector.Record{
			{Op: detector.Write, Path: note},
			{Op: detector.Write, Path: a, PreHash: h},
		}}
	if err := v.SaveIncident(inc); err != nil {
		t.Fatal(err)
	}
	return v, root, inc
}

func TestIncidentRestoresContentModeMtimeAndRemovesNotes(t *testing.T) {
	v, root, inc := setup(t)
	a := filepath.Join(root, "docs", "a.txt")
	dry, err := Incident(v, inc, []string{root}, Options{DryRun: true})
	if err != nil || len(dry) != 2 {
		t.Fatalf("dry run: %+v %v", dry, err)
	}
	if b, _ := os.ReadFile(a); string(b) == "original content\n" {
		t.Fatal("dry run changed a file")
	}
	acts, err := Incident(v, inc, []string{root}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range acts {
		if !a.Done || a.Error != "" {
			t.Errorf("action %+v", a)
		}
	}
	b, _ := os.ReadFile(a)
	st, _ := os.Stat(a)
	if string(b) != "original content\n" || st.Mode().Perm() != 0o640 || !st.ModTime().Equal(time.Date(2017, 5, 11, 9, 0, 0, 0, time.UTC)) {
		t.Fatalf("restored %q mode %v mtime %v", b, st.Mode(), st.ModTime())
	}
	if _, err := os.Stat(filepath.Join(root, "docs", "@Please_Read_Me@.txt")); !os.IsNotExist(err) {
		t.Fatal("ransom note not removed")
	}
	if got, _ := v.Incident("ks-test"); got.State != vault.StateRestored {
		t.Fatalf("incident state %q", got.State)
	}
}

// TestRestoreNeverFollowsAPlantedSymlink: the attacker replaced the folder
// with a symlink to somewhere else; restore must not write there.
func TestRestoreNeverFollowsAPlantedSymlink(t *testing.T) {
	v, root, inc := setup(t)
	outside := t.TempDir()
	os.RemoveAll(filepath.Join(root, "docs"))
	if err := os.Symlink(outside, filepath.Join(root, "docs")); err != nil {
		t.Fatal(err)
	}
	acts, err := Incident(v, inc, []string{root}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(outside)
	if len(ents) != 0 {
		t.Fatalf("restore wrote through the symlink: %v", ents)
	}
	failed := false
	for _, a := range acts {
		failed = failed || a.Error != ""
	}
	if !failed {
		t.Fatalf("restore reported success through a symlink: %+v", acts)
	}
	// A path that climbs out of the root is refused before any I/O.
	bad := vault.Incident{ID: "x", FrozenAt: time.Now(), Files: []detector.Record{{Op: detector.Write, Path: root + "/../escape.txt", PreHash: inc.Files[1].PreHash}}}
	acts, _ = Incident(v, bad, []string{root}, Options{})
	if len(acts) != 1 || acts[0].Op != "skip" {
		t.Fatalf("escape not refused: %+v", acts)
	}
}

// TestChangedAfterIncidentKeepsBoth: someone edited the file after the
// attack was stopped; restore puts the vault's copy beside it.
func TestChangedAfterIncidentKeepsBoth(t *testing.T) {
	v, root, inc := setup(t)
	a := filepath.Join(root, "docs", "a.txt")
	os.WriteFile(a, []byte("new work after the incident\n"), 0o640)
	later := inc.FrozenAt.Add(time.Hour)
	os.Chtimes(a, later, later)
	acts, err := Incident(v, inc, []string{root}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var kb *Action
	for i := range acts {
		if acts[i].Op == "keep-both" {
			kb = &acts[i]
		}
	}
	if kb == nil || !kb.Done {
		t.Fatalf("no keep-both: %+v", acts)
	}
	if b, _ := os.ReadFile(a); string(b) != "new work after the incident\n" {
		t.Fatal("the later edit was clobbered")
	}
	if b, _ := os.ReadFile(kb.AsPath); string(b) != "original content\n" {
		t.Fatalf("vault copy beside it: %q", b)
	}
}

func TestBeforeRestoresPointInTime(t *testing.T) {
	v, root, _ := setup(t)
	acts, err := Before(v, []string{root}, time.Now(), Options{})
	if err != nil || len(acts) != 1 || !acts[0].Done {
		t.Fatalf("before: %+v %v", acts, err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "docs", "a.txt")); string(b) != "original content\n" {
		t.Fatalf("content %q", b)
	}
	// Nothing existed an hour and a half ago: nothing to do.
	acts, _ = Before(v, []string{root}, time.Now().Add(-90*time.Minute), Options{})
	if len(acts) != 0 {
		t.Fatalf("restored from before the first version: %+v", acts)
	}
}
