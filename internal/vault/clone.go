package vault

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// rawSuffix names a blob kept uncompressed because it is a reflink
// (FICLONE) of the protected file: the copy was instant and shares the
// file's blocks until either of them changes.
const rawSuffix = ".raw"

func (v *Vault) rawPath(hash string) string { return v.blobPath(hash) + rawSuffix }

// hasBlob reports whether a blob with this hash is stored in either form.
func (v *Vault) hasBlob(hash string) bool {
	if _, err := os.Stat(v.blobPath(hash)); err == nil {
		return true
	}
	_, err := os.Stat(v.rawPath(hash))
	return err == nil
}

// errNoClone means the filesystem cannot share blocks between the file
// and the vault (ext4, or another filesystem): copy instead.
var errNoClone = errors.New("reflinks not supported here")

// StoreFD stores the content of the open file fd (size bytes, read with
// pread, never moving its offset). Large files are cloned where the
// filesystem supports reflinks (xfs, btrfs) and compressed otherwise.
func (v *Vault) StoreFD(fd int, size int64) (hash string, n int64, err error) {
	if size > smallFile {
		hash, n, err = v.storeClone(fd)
		if !errors.Is(err, errNoClone) {
			return hash, n, err
		}
	}
	return v.StoreBlob(io.NewSectionReader(fdReaderAt(fd), 0, size), size)
}

func (v *Vault) storeClone(fd int) (string, int64, error) {
	tmp, err := os.CreateTemp(filepath.Join(v.dir, "tmp"), "clone-")
	if err != nil {
		return "", 0, fmt.Errorf("vault: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed into place
	defer tmp.Close()
	if err := unix.IoctlFileClone(int(tmp.Fd()), fd); err != nil {
		switch {
		case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EXDEV), errors.Is(err, unix.EINVAL),
			errors.Is(err, unix.ENOTTY), errors.Is(err, unix.ENOSYS):
			return "", 0, errNoClone
		}
		return "", 0, fmt.Errorf("vault: clone: %w", err)
	}
	h := sha256.New()
	n, err := io.Copy(h, tmp)
	if err != nil {
		return "", n, fmt.Errorf("vault: hashing the clone: %w", err)
	}
	hash := hex.EncodeToString(h.Sum(nil))
	if v.hasBlob(hash) {
		return hash, n, nil
	}
	if err := os.Rename(tmp.Name(), v.rawPath(hash)); err != nil {
		return "", n, fmt.Errorf("vault: %w", err)
	}
	return hash, n, nil
}

// fdReaderAt reads a raw descriptor with pread.
type fdReaderAt int

func (r fdReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := unix.Pread(int(r), p, off)
	if n < 0 {
		n = 0
	}
	if err == nil && n < len(p) {
		return n, io.EOF
	}
	return n, err
}
