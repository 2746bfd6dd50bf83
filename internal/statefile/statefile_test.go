package statefile

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

// TestEditSerialises: edits from many writers at once are applied one
// after the other (none lost), and leave no temporary file behind.
func TestEditSerialises(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "count")
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			err := Edit(path, func(cur []byte) ([]byte, error) {
				n := 0
				if cur != nil {
					n, _ = strconv.Atoi(string(cur))
				}
				return []byte(strconv.Itoa(n + 1)), nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if b, _ := os.ReadFile(path); string(b) != "20" {
		t.Errorf("after 20 increments: %q", b)
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	for _, e := range ents {
		if e.Name() != "count" && e.Name() != "count.lock" {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

// TestEditErrorChangesNothing: an edit that fails leaves the file as it was.
func TestEditErrorChangesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state")
	if err := Replace(path, []byte("kept")); err != nil {
		t.Fatal(err)
	}
	refuse := errors.New("refused")
	if err := Edit(path, func([]byte) ([]byte, error) { return nil, refuse }); !errors.Is(err, refuse) {
		t.Fatalf("Edit = %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "kept" {
		t.Errorf("file is %q", b)
	}
	if b, err := Read(filepath.Join(t.TempDir(), "none")); b != nil || err != nil {
		t.Errorf("Read of a missing file = %q, %v", b, err)
	}
}
