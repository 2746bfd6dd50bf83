package fanotify

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrNotSupported is wrapped by every error that means "this kernel or
// this process lacks a fanotify feature", as opposed to a usage error.
var ErrNotSupported = errors.New("not supported")

// Event masks re-exported so that callers never import x/sys/unix for fanotify.
const (
	OpenPerm      = unix.FAN_OPEN_PERM
	OpenExecPerm  = unix.FAN_OPEN_EXEC_PERM
	CloseWrite    = unix.FAN_CLOSE_WRITE
	Modify        = unix.FAN_MODIFY
	Create        = unix.FAN_CREATE
	Delete        = unix.FAN_DELETE
	Rename        = unix.FAN_RENAME
	MovedFrom     = unix.FAN_MOVED_FROM
	MovedTo       = unix.FAN_MOVED_TO
	OnDir         = unix.FAN_ONDIR
	OnChild       = unix.FAN_EVENT_ON_CHILD
	QueueOverflow = unix.FAN_Q_OVERFLOW
)

// Class selects what kind of group to create.
type Class int

const (
	// Permission groups receive an open file descriptor with every event and
	// may answer permission events. They cannot report names.
	Permission Class = iota
	// Dirent groups report directory-entry changes (create, delete, rename)
	// as a directory handle plus a name (FAN_REPORT_DFID_NAME).
	Dirent
)

// Group is one fanotify instance. Read, Respond, Mark and Close may be
// called from different goroutines.
type Group struct {
	class Class
	file  *os.File // non-blocking fd driven by the Go poller; Close unblocks Read
	fd    int

	mu     sync.Mutex
	closed bool
}

// New creates a group. queueLimit false keeps the kernel's bounded queue, so
// that a flood of notification events shows up as QueueOverflow instead of
// unbounded kernel memory.
func New(class Class) (*Group, error) {
	flags := uint(unix.FAN_CLOEXEC | unix.FAN_NONBLOCK | unix.FAN_UNLIMITED_MARKS)
	switch class {
	case Permission:
		flags |= unix.FAN_CLASS_CONTENT
	case Dirent:
		flags |= unix.FAN_CLASS_NOTIF | unix.FAN_REPORT_DFID_NAME
	default:
		return nil, fmt.Errorf("fanotify: unknown class %d", class)
	}
	fd, err := unix.FanotifyInit(flags, unix.O_RDONLY|unix.O_LARGEFILE|unix.O_CLOEXEC|unix.O_NOATIME)
	if errors.Is(err, unix.EPERM) {
		return nil, fmt.Errorf("fanotify_init: %w: needs CAP_SYS_ADMIN (run as root): %w", ErrNotSupported, err)
	}
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		return nil, fmt.Errorf("fanotify_init(class=%d): %w: kernel lacks a needed flag: %w", class, ErrNotSupported, err)
	}
	if err != nil {
		return nil, fmt.Errorf("fanotify_init: %w", err)
	}
	return &Group{class: class, fd: fd, file: os.NewFile(uintptr(fd), "fanotify")}, nil
}

// MarkDir places an inode mark on a directory. For a Permission group pass
// OnChild so that opens of the directory's files are reported.
func (g *Group) MarkDir(path string, mask uint64) error {
	err := unix.FanotifyMark(g.fd, unix.FAN_MARK_ADD|unix.FAN_MARK_ONLYDIR|unix.FAN_MARK_DONT_FOLLOW, mask, unix.AT_FDCWD, path)
	if err != nil {
		return fmt.Errorf("fanotify_mark %s: %w", path, err)
	}
	return nil
}

// MarkFilesystem marks the whole filesystem that holds path, through every
// mount and bind mount of it (used to see every execution on a host).
func (g *Group) MarkFilesystem(path string, mask uint64) error {
	err := unix.FanotifyMark(g.fd, unix.FAN_MARK_ADD|unix.FAN_MARK_FILESYSTEM, mask, unix.AT_FDCWD, path)
	if err != nil {
		return fmt.Errorf("fanotify_mark filesystem %s: %w", path, err)
	}
	return nil
}

// FlushInodeMarks removes every inode mark of the group, ignore marks
// included; mount and filesystem marks stay.
func (g *Group) FlushInodeMarks() error {
	if err := unix.FanotifyMark(g.fd, unix.FAN_MARK_FLUSH, 0, unix.AT_FDCWD, ""); err != nil {
		return fmt.Errorf("fanotify_mark flush: %w", err)
	}
	return nil
}

// UnmarkDir removes a directory's mark (the directory left the protected tree).
func (g *Group) UnmarkDir(path string, mask uint64) error {
	err := unix.FanotifyMark(g.fd, unix.FAN_MARK_REMOVE|unix.FAN_MARK_ONLYDIR|unix.FAN_MARK_DONT_FOLLOW, mask, unix.AT_FDCWD, path)
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("fanotify_mark remove %s: %w", path, err)
	}
	return nil
}

// IgnoreUntilModified tells the kernel not to report the events in mask for
// the file open as fd until the file is next modified; the kernel clears
// the ignore mask by itself on modification.
func (g *Group) IgnoreUntilModified(fd int, mask uint64) error {
	err := unix.FanotifyMark(g.fd, unix.FAN_MARK_ADD|unix.FAN_MARK_IGNORED_MASK, mask, fd, "")
	if err != nil {
		return fmt.Errorf("fanotify_mark ignore: %w", err)
	}
	return nil
}

// StopIgnoring removes the ignore mark of the file at path (no error if
// there is none or the file is gone). Unlike FAN_MARK_FLUSH it leaves the
// directory marks in place, so no event is lost while it runs.
func (g *Group) StopIgnoring(path string, mask uint64) error {
	err := unix.FanotifyMark(g.fd, unix.FAN_MARK_REMOVE|unix.FAN_MARK_IGNORED_MASK|unix.FAN_MARK_DONT_FOLLOW, mask, unix.AT_FDCWD, path)
	if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOTDIR) {
		return fmt.Errorf("fanotify_mark remove ignore %s: %w", path, err)
	}
	return nil
}

// StopIgnoringFD removes the ignore mark of the file open as fd.
func (g *Group) StopIgnoringFD(fd int, mask uint64) error {
	err := unix.FanotifyMark(g.fd, unix.FAN_MARK_REMOVE|unix.FAN_MARK_IGNORED_MASK, mask, fd, "")
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("fanotify_mark remove ignore: %w", err)
	}
	return nil
}

// Respond answers a permission event. Allowed or not, the event's fd is
// still the caller's to close.
func (g *Group) Respond(fd int, allow bool) error {
	resp := uint32(unix.FAN_ALLOW)
	if !allow {
		resp = unix.FAN_DENY
	}
	var b [8]byte
	binary.NativeEndian.PutUint32(b[0:], uint32(int32(fd)))
	binary.NativeEndian.PutUint32(b[4:], resp)
	_, err := g.file.Write(b[:])
	if err != nil {
		return fmt.Errorf("fanotify respond: %w", err)
	}
	return nil
}

// Read blocks until events are available and decodes them into evs (reused).
// It returns os.ErrClosed after Close.
func (g *Group) Read(buf []byte, evs []Event) ([]Event, error) {
	n, err := g.file.Read(buf)
	if err != nil {
		return evs[:0], err
	}
	return decode(buf[:n], evs[:0], func(fd int32) { unix.Close(int(fd)) })
}

// Close releases the group. The kernel answers "allow" to every permission
// event still pending, so no writer stays blocked whatever happens to us.
func (g *Group) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	g.closed = true
	return g.file.Close()
}

// FD is the raw descriptor (for tests that need it).
func (g *Group) FD() int { return g.fd }

// Event is one decoded fanotify event.
type Event struct {
	Mask uint64
	Pid  int32
	// Fd is an open descriptor on the object (Permission groups), or -1.
	// The receiver must close it (CloseFD).
	Fd int32
	// Dir identifies the directory (Dirent groups): fsid and file handle as
	// an opaque key comparable with DirKey; Name is the entry inside it.
	Dir, Name string
	// For Rename events: the new directory and name.
	NewDir, NewName string
}

// CloseFD closes the event's descriptor, if any.
func (e *Event) CloseFD() {
	if e.Fd >= 0 {
		unix.Close(int(e.Fd))
		e.Fd = -1
	}
}

// ErrMalformed is wrapped when the kernel's buffer cannot be decoded.
var ErrMalformed = errors.New("fanotify: malformed event buffer")

const metaLen = int(unix.FAN_EVENT_METADATA_LEN)

// maxHandle is MAX_HANDLE_SZ from the kernel.
const maxHandle = 128

// Decode parses a buffer read from a fanotify fd. It never panics on bad
// input: it returns the events decoded so far and an error. It closes no
// descriptor (Read does that for events it cannot return).
func Decode(b []byte, evs []Event) ([]Event, error) {
	return decode(b, evs, func(int32) {})
}

func decode(b []byte, evs []Event, closeFD func(int32)) ([]Event, error) {
	for len(b) > 0 {
		if len(b) < metaLen {
			return evs, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(b))
		}
		evLen := int(binary.NativeEndian.Uint32(b[0:]))
		vers := b[4]
		mlen := int(binary.NativeEndian.Uint16(b[6:]))
		if vers != unix.FANOTIFY_METADATA_VERSION {
			return evs, fmt.Errorf("%w: metadata version %d", ErrMalformed, vers)
		}
		if evLen < metaLen || evLen > len(b) || mlen < metaLen || mlen > evLen {
			return evs, fmt.Errorf("%w: event_len %d metadata_len %d of %d", ErrMalformed, evLen, mlen, len(b))
		}
		ev := Event{
			Mask: binary.NativeEndian.Uint64(b[8:]),
			Fd:   int32(binary.NativeEndian.Uint32(b[16:])),
			Pid:  int32(binary.NativeEndian.Uint32(b[20:])),
		}
		if err := decodeInfo(b[mlen:evLen], &ev); err != nil {
			if ev.Fd >= 0 {
				closeFD(ev.Fd)
			}
			return evs, err
		}
		evs = append(evs, ev)
		b = b[evLen:]
	}
	return evs, nil
}

// decodeInfo parses the info records that follow the metadata.
func decodeInfo(b []byte, ev *Event) error {
	for len(b) > 0 {
		if len(b) < 4 {
			return fmt.Errorf("%w: short info header", ErrMalformed)
		}
		typ := b[0]
		l := int(binary.NativeEndian.Uint16(b[2:]))
		if l < 4 || l > len(b) {
			return fmt.Errorf("%w: info record length %d of %d", ErrMalformed, l, len(b))
		}
		rec := b[4:l]
		switch typ {
		case unix.FAN_EVENT_INFO_TYPE_DFID_NAME, unix.FAN_EVENT_INFO_TYPE_OLD_DFID_NAME,
			unix.FAN_EVENT_INFO_TYPE_NEW_DFID_NAME, unix.FAN_EVENT_INFO_TYPE_DFID:
			dir, name, err := decodeFID(rec, typ != unix.FAN_EVENT_INFO_TYPE_DFID)
			if err != nil {
				return err
			}
			if typ == unix.FAN_EVENT_INFO_TYPE_NEW_DFID_NAME {
				ev.NewDir, ev.NewName = dir, name
			} else {
				ev.Dir, ev.Name = dir, name
			}
		default:
			// Other records (FID of the child, pidfd, error) are not used.
		}
		b = b[l:]
	}
	return nil
}

// decodeFID parses fsid + struct file_handle [+ NUL-terminated name].
func decodeFID(rec []byte, withName bool) (dir, name string, err error) {
	const hdr = 8 + 8 // fsid, handle_bytes + handle_type
	if len(rec) < hdr {
		return "", "", fmt.Errorf("%w: short fid record", ErrMalformed)
	}
	hbytes := int(binary.NativeEndian.Uint32(rec[8:]))
	end := hdr + hbytes
	if hbytes > maxHandle || end > len(rec) {
		return "", "", fmt.Errorf("%w: file handle of %d bytes", ErrMalformed, hbytes)
	}
	dir = string(rec[:end])
	if withName {
		rest := rec[end:]
		i := 0
		for i < len(rest) && rest[i] != 0 {
			i++
		}
		if i == len(rest) {
			return "", "", fmt.Errorf("%w: name not terminated", ErrMalformed)
		}
		name = string(rest[:i])
	}
	return dir, name, nil
}

// DirKey computes, for a directory path, the key that Dirent events carry
// in Event.Dir, so that events can be mapped back to paths without
// open_by_handle_at.
func DirKey(path string) (string, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return "", fmt.Errorf("statfs %s: %w", path, err)
	}
	h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, path, 0)
	if err != nil {
		return "", fmt.Errorf("name_to_handle_at %s: %w", path, err)
	}
	b := make([]byte, 16+h.Size())
	binary.NativeEndian.PutUint32(b[0:], uint32(st.Fsid.Val[0]))
	binary.NativeEndian.PutUint32(b[4:], uint32(st.Fsid.Val[1]))
	binary.NativeEndian.PutUint32(b[8:], uint32(h.Size()))
	binary.NativeEndian.PutUint32(b[12:], uint32(h.Type()))
	copy(b[16:], h.Bytes())
	return string(b), nil
}

// FDPath returns the path of an event's descriptor.
func FDPath(fd int32) (string, error) {
	return os.Readlink("/proc/self/fd/" + strconv.Itoa(int(fd)))
}

// TryRead reads whatever events are queued without blocking; it returns no
// events and no error when the queue is empty. Use it from a poll loop.
func (g *Group) TryRead(buf []byte, evs []Event) ([]Event, error) {
	n, err := unix.Read(g.fd, buf)
	if err == unix.EAGAIN || err == unix.EINTR {
		return evs[:0], nil
	}
	if err != nil {
		return evs[:0], fmt.Errorf("fanotify read: %w", err)
	}
	return decode(buf[:n], evs[:0], func(fd int32) { unix.Close(int(fd)) })
}

// Poll waits until one of the groups or the extra descriptor is readable,
// or timeoutMs passes. It reports readiness in the order given.
func Poll(timeoutMs int, fds ...int) ([]bool, error) {
	pfds := make([]unix.PollFd, len(fds))
	for i, fd := range fds {
		pfds[i] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	}
	_, err := unix.Poll(pfds, timeoutMs)
	if err != nil && err != unix.EINTR {
		return nil, fmt.Errorf("poll: %w", err)
	}
	ready := make([]bool, len(fds))
	for i := range pfds {
		ready[i] = pfds[i].Revents&(unix.POLLIN|unix.POLLERR|unix.POLLHUP) != 0
	}
	return ready, nil
}
