package fanotify

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

// dirent builds one DFID_NAME event as the kernel lays it out.
func dirent(mask uint64, handle []byte, name string) []byte {
	rec := make([]byte, 4+8+8+len(handle)+len(name)+1)
	rec[0] = unix.FAN_EVENT_INFO_TYPE_DFID_NAME
	binary.NativeEndian.PutUint16(rec[2:], uint16(len(rec)))
	binary.NativeEndian.PutUint32(rec[12:], uint32(len(handle)))
	copy(rec[20:], handle)
	copy(rec[20+len(handle):], name)
	ev := make([]byte, metaLen, metaLen+len(rec))
	binary.NativeEndian.PutUint32(ev[0:], uint32(metaLen+len(rec)))
	ev[4] = unix.FANOTIFY_METADATA_VERSION
	binary.NativeEndian.PutUint16(ev[6:], uint16(metaLen))
	binary.NativeEndian.PutUint64(ev[8:], mask)
	binary.NativeEndian.PutUint32(ev[16:], uint32(0xffffffff)) // FAN_NOFD
	binary.NativeEndian.PutUint32(ev[20:], 42)
	return append(ev, rec...)
}

func TestDecodeDirent(t *testing.T) {
	b := dirent(Create, []byte{1, 2, 3, 4, 5, 6, 7, 8}, "note.txt")
	evs, err := Decode(b, nil)
	if err != nil || len(evs) != 1 {
		t.Fatalf("Decode = %v, %v", evs, err)
	}
	if evs[0].Name != "note.txt" || evs[0].Pid != 42 || evs[0].Fd != -1 || evs[0].Mask != Create {
		t.Fatalf("decoded %+v", evs[0])
	}
	// Truncated in every possible place: an error, never a panic or a bogus event.
	for i := 1; i < len(b); i++ {
		if evs, err := Decode(b[:i], nil); err == nil || len(evs) != 0 {
			t.Fatalf("truncated at %d: %v %v", i, evs, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(dirent(Create, []byte{1, 2, 3, 4, 5, 6, 7, 8}, "a"))
	f.Add(append(dirent(Delete, []byte{9}, "b.WNCRY"), dirent(Rename, nil, "")...))
	f.Fuzz(func(t *testing.T, b []byte) {
		// Fds in fuzz input are not ours: never close them.
		evs, _ := Decode(b, nil)
		for _, ev := range evs {
			if len(ev.Dir) > 16+maxHandle {
				t.Fatalf("dir key of %d bytes", len(ev.Dir))
			}
		}
	})
}
