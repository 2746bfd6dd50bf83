package fanotify

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// PermMask is what the guard asks of a Permission group on every protected
// directory. An execution opens its file too, so FAN_OPEN_PERM sees it:
// asking for FAN_OPEN_EXEC_PERM as well would only double the round trip.
const PermMask = OpenPerm | CloseWrite | OnChild

// DirentMask is what the guard asks of a Dirent group on every protected directory.
const DirentMask = Create | Delete | Rename | OnDir

// Probe checks that this kernel and process can do everything the guard
// needs, on a scratch directory inside dir (which must be on the filesystem
// to protect). The error wraps ErrNotSupported and names what is missing.
func Probe(dir string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("fanotify permission events: %w: must run as root (CAP_SYS_ADMIN)", ErrNotSupported)
	}
	scratch, err := os.MkdirTemp(dir, ".killswitch-probe-")
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	defer os.RemoveAll(scratch)
	checks := []struct {
		class Class
		mask  uint64
		what  string
	}{
		{Permission, PermMask, "permission events (FAN_CLASS_CONTENT, FAN_OPEN_PERM)"},
		{Dirent, DirentMask, "directory-entry events (FAN_REPORT_DFID_NAME, FAN_RENAME: Linux 5.17+)"},
	}
	for _, c := range checks {
		g, err := New(c.class)
		if err != nil {
			return fmt.Errorf("%s: %w", c.what, err)
		}
		err = g.MarkDir(scratch, c.mask)
		g.Close()
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.EXDEV) {
			return fmt.Errorf("%s on %s: %w: %w", c.what, dir, ErrNotSupported, err)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", c.what, err)
		}
	}
	return nil
}
