package execblock

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/killswitch-dev/killswitch/internal/statefile"
)

// Sum is a SHA-256 digest of a binary's contents.
type Sum [sha256.Size]byte

// ParseSum reads 64 hexadecimal digits (either case).
func ParseSum(s string) (Sum, error) {
	var sum Sum
	if len(s) != 2*len(sum) {
		return sum, fmt.Errorf("execblock: %q is not a SHA-256 (64 hex digits)", s)
	}
	if _, err := hex.Decode(sum[:], []byte(strings.ToLower(s))); err != nil {
		return sum, fmt.Errorf("execblock: %q is not a SHA-256 (64 hex digits)", s)
	}
	return sum, nil
}

func (s Sum) String() string { return hex.EncodeToString(s[:]) }

// Entry is one blocked binary.
type Entry struct {
	SHA256 string    `json:"sha256"`
	Note   string    `json:"note,omitempty"` // why, for the operator (e.g. the incident)
	Added  time.Time `json:"added"`
}

// state is the file that keeps the list across restarts, so that a host
// enforces its blocks from boot, before it has reached the hub.
type state struct {
	Version int     `json:"version"`
	Blocked []Entry `json:"blocked"`
}

const stateVersion = 1

// maxNote bounds a note: it is shown in logs and alerts.
const maxNote = 512

// ParseState decodes a state file, refusing anything but a well-formed
// list of valid entries.
func ParseState(b []byte) ([]Entry, error) {
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("execblock: state: %w", err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("execblock: state: version %d, want %d", st.Version, stateVersion)
	}
	seen := map[Sum]bool{}
	for i, e := range st.Blocked {
		sum, err := ParseSum(e.SHA256)
		if err != nil {
			return nil, fmt.Errorf("execblock: state entry %d: %w", i, err)
		}
		if err := checkNote(e.Note); err != nil {
			return nil, fmt.Errorf("execblock: state entry %d: %w", i, err)
		}
		if seen[sum] {
			return nil, fmt.Errorf("execblock: state entry %d: %s listed twice", i, sum)
		}
		seen[sum] = true
		st.Blocked[i].SHA256 = sum.String()
	}
	return st.Blocked, nil
}

func checkNote(note string) error {
	if len(note) > maxNote || !utf8.ValidString(note) || strings.ContainsFunc(note, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return errors.New("note: up to 512 printable characters")
	}
	return nil
}

// EditState changes the list kept at path, under its lock. A running
// blocker picks the change up within a second.
func EditState(path string, edit func([]Entry) ([]Entry, error)) error {
	unlock, err := statefile.Lock(path)
	if err != nil {
		return fmt.Errorf("execblock: %w", err)
	}
	defer unlock()
	entries, err := loadState(path)
	if err != nil {
		return fmt.Errorf("execblock: %s: %w", path, err)
	}
	if entries, err = edit(entries); err != nil {
		return err
	}
	return saveState(path, entries)
}

// CheckBlockable refuses a hash the host cannot run without (see Block).
func CheckBlockable(sum Sum) error {
	sums, _ := essentialBinaries()
	if why, ok := sums[sum]; ok {
		return fmt.Errorf("%w: %s is %s", ErrEssential, sum, why)
	}
	return nil
}

// loadState reads path; a missing file is an empty list.
func loadState(path string) ([]Entry, error) {
	b, err := statefile.Read(path)
	if err != nil || b == nil {
		return nil, err
	}
	return ParseState(b)
}

// saveState replaces path atomically and durably: a crash leaves the old
// list or the new one, never a torn file.
func saveState(path string, entries []Entry) error {
	seen := map[string]bool{}
	for _, e := range entries { // never write what ParseState would refuse
		if _, err := ParseSum(e.SHA256); err != nil {
			return err
		}
		if err := checkNote(e.Note); err != nil {
			return fmt.Errorf("execblock: %w", err)
		}
		if seen[e.SHA256] {
			return fmt.Errorf("execblock: %s listed twice", e.SHA256)
		}
		seen[e.SHA256] = true
	}
	if entries == nil {
		entries = []Entry{}
	}
	b, err := json.MarshalIndent(state{Version: stateVersion, Blocked: entries}, "", "  ")
	if err != nil {
		return err
	}
	return statefile.Replace(path, append(b, '\n'))
}
