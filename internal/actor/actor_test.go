package actor

import (
	"bytes"
	"os"
	"testing"
)

func TestParseStatWithHostileComm(t *testing.T) {
	// A process can name itself anything, parentheses and spaces included.
	line := []byte("4242 (evil) 1 2 (x) S 77 4242 4242 0 -1 4194304 1 0 0 0 0 0 0 0 20 0 1 0 123456 0 0")
	info, err := parseStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if info.Comm != "evil) 1 2 (x" || info.PPID != 77 || info.PGID != 4242 || info.Start != 123456 {
		t.Fatalf("parsed %+v", info)
	}
}

func TestSelfLineage(t *testing.T) {
	c := NewCache("/proc")
	l := c.Lineage(os.Getpid())
	if len(l) == 0 || l[0].PID != os.Getpid() || l[0].Executable == "" {
		t.Fatalf("lineage of self: %+v", l)
	}
	again, _ := c.Get(os.Getpid())
	if again.ID != l[0].ID {
		t.Fatal("cache returned a different identity for the same process")
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("1 (systemd) S 0 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 2 0 0"))
	f.Add([]byte("2 ()) R"))
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := parseStat(b)
		if err == nil && !bytes.Contains(b, []byte("("+info.Comm+")")) {
			t.Fatalf("comm %q is not what stood between the parentheses of %q", info.Comm, b)
		}
	})
}
