package vault

import (
	"bytes"
	"crypto/rand"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/killswitch-dev/killswitch/internal/testenv"
)

// TestLargeFilesAreReflinkedOnXFS: on a filesystem with reflinks the vault
// clones a large file instead of compressing it, and reads it back exactly.
func TestLargeFilesAreReflinkedOnXFS(t *testing.T) {
	testenv.RequireRoot(t)
	mkfs := testenv.RequireTool(t, "mkfs.xfs")
	base := t.TempDir()
	img, mnt := filepath.Join(base, "xfs.img"), filepath.Join(base, "mnt")
	os.Mkdir(mnt, 0o755)
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Truncate(img, 512<<20)
	if out, err := exec.Command(mkfs, "-q", "-m", "reflink=1", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.xfs: %v\n%s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		testenv.Skip(t, "cannot loop-mount an xfs image here: "+strings.TrimSpace(string(out)))
	}
	defer exec.Command("umount", mnt).Run()

	v, err := Open(filepath.Join(mnt, "vault"))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	content := make([]byte, smallFile+1<<20)
	rand.Read(content)
	p := filepath.Join(mnt, "disk.vmdk")
	os.WriteFile(p, content, 0o644)
	f, _ := os.Open(p)
	defer f.Close()
	h, n, err := v.StoreFD(int(f.Fd()), int64(len(content)))
	if err != nil || n != int64(len(content)) {
		t.Fatal(n, err)
	}
	if _, err := os.Stat(v.rawPath(h)); err != nil {
		t.Fatalf("no reflinked blob: %v", err)
	}
	// The original changes; the vault's copy does not.
	os.WriteFile(p, []byte("encrypted"), 0o644)
	rc, err := v.OpenBlob(h)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("reflinked blob read back wrong: %v", err)
	}
	if head, _ := v.Head(h, 4096); !bytes.Equal(head, content[:4096]) {
		t.Fatal("Head of a reflinked blob")
	}
	if err := v.Add(Version{Path: p, Kind: Content, Hash: h}); err != nil {
		t.Fatal(err)
	}
	if r, err := v.Check(); err != nil || !r.OK() || r.Blobs != 1 {
		t.Fatalf("check: %+v %v", r, err)
	}
}

// On ext4 (no reflinks) StoreFD falls back to a compressed copy.
func TestStoreFDWithoutReflinks(t *testing.T) {
	v := open(t)
	content := bytes.Repeat([]byte("x"), smallFile+10)
	p := filepath.Join(t.TempDir(), "big")
	os.WriteFile(p, content, 0o644)
	f, _ := os.Open(p)
	defer f.Close()
	h, _, err := v.StoreFD(int(f.Fd()), int64(len(content)))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := readBlob(t, v, h); err != nil || !bytes.Equal(got, content) {
		t.Fatalf("round trip: %v", err)
	}
}
