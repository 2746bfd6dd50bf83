package restore

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/killswitch-dev/killswitch/internal/detector"
	"github.com/killswitch-dev/killswitch/internal/vault"
)

// Action is one step of a restore plan.
type Action struct {
	Op     string `json:"op"` // restore, remove, keep-both, skip
	Path   string `json:"path"`
	Hash   string `json:"hash,omitempty"`
	Note   string `json:"note,omitempty"`
	Error  string `json:"error,omitempty"`
	Done   bool   `json:"done"`
	AsPath string `json:"as_path,omitempty"` // keep-both: where the vault copy went
}

// Options control a restore.
type Options struct {
	DryRun   bool
	Progress func(done, total int)
}

// Incident restores what the incident changed. Roots bound where it may
// write (the protected folders); paths outside them are refused.
func Incident(v *vault.Vault, inc vault.Incident, roots []string, opt Options) ([]Action, error) {
	plan := planIncident(inc)
	acts := make([]Action, 0, len(plan))
	for i, a := range plan {
		root := rootOf(a.Path, roots)
		if root == "" {
			a.Op, a.Note = "skip", "outside the protected folders"
		} else {
			a = apply(v, root, a, inc.FrozenAt, opt.DryRun)
		}
		acts = append(acts, a)
		if opt.Progress != nil {
			opt.Progress(i+1, len(plan))
		}
	}
	if !opt.DryRun {
		inc.State = vault.StateRestored
		inc.RestoredAt = time.Now().UTC()
		if err := v.SaveIncident(inc); err != nil {
			return acts, err
		}
	}
	return acts, nil
}

// planIncident turns an incident's history into the end state: each
// original path back to the content it had before the attack, each file
// the attack created removed.
func planIncident(inc vault.Incident) []Action {
	original := map[string]string{} // path -> hash before the attack
	created := map[string]bool{}
	note := func(p, h string) {
		if _, ok := original[p]; !ok && !created[p] && h != "" {
			original[p] = h
		}
	}
	for _, r := range inc.Files {
		switch r.Op {
		case detector.Write:
			if r.PreHash != "" {
				note(r.Path, r.PreHash)
			} else if _, ok := original[r.Path]; !ok {
				created[r.Path] = true
			}
		case detector.Delete:
			note(r.Path, r.PreHash)
		case detector.Rename:
			note(r.Path, r.PreHash)
			if r.PostHash != "" { // the rename replaced an existing file
				note(r.NewPath, r.PostHash)
			} else if _, ok := original[r.NewPath]; !ok {
				created[r.NewPath] = true
			}
		}
	}
	var out []Action
	for p, h := range original {
		out = append(out, Action{Op: "restore", Path: p, Hash: h})
	}
	for p := range created {
		if _, ok := original[p]; !ok {
			out = append(out, Action{Op: "remove", Path: p})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// Before restores every file under roots to its content at time t.
// Files that did not exist at t are left alone and listed.
func Before(v *vault.Vault, roots []string, t time.Time, opt Options) ([]Action, error) {
	var acts []Action
	for _, root := range roots {
		root = filepath.Clean(root)
		state, err := v.StateAt([]string{root}, t)
		if err != nil {
			return acts, err
		}
		for i, x := range state {
			a := Action{Path: x.Path}
			if x.Kind == vault.Content {
				a.Op, a.Hash = "restore", x.Hash
				a = apply(v, root, a, time.Time{}, opt.DryRun)
			} else {
				a.Op, a.Note, a.Done = "skip", "did not exist at that time", true
			}
			acts = append(acts, a)
			if opt.Progress != nil {
				opt.Progress(i+1, len(state))
			}
		}
	}
	return acts, nil
}

func rootOf(p string, roots []string) string {
	for _, r := range roots {
		if vault.Under(p, filepath.Clean(r)) && p != filepath.Clean(r) {
			return filepath.Clean(r)
		}
	}
	return ""
}

// apply carries out one action. since is the incident's freeze time: a
// file modified after it was changed by someone else and is kept.
func apply(v *vault.Vault, root string, a Action, since time.Time, dry bool) Action {
	rel, err := filepath.Rel(root, a.Path)
	if err != nil || !filepath.IsLocal(rel) {
		a.Op, a.Error = "skip", "path escapes the restored folder"
		return a
	}
	rootFD, err := unix.Open(root, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		a.Error = err.Error()
		return a
	}
	defer unix.Close(rootFD)
	cur, curErr := currentState(rootFD, rel)
	changedLater := curErr == nil && !since.IsZero() && cur.mtime.After(since.Add(time.Second))
	switch a.Op {
	case "remove":
		if curErr != nil {
			a.Op, a.Note, a.Done = "skip", "already gone", true
			return a
		}
		if changedLater {
			a.Op, a.Note, a.Done = "skip", "changed after the incident: kept", true
			return a
		}
		if dry {
			return a
		}
		dirFD, name, err := openParent(rootFD, rel, false)
		if err == nil {
			err = unix.Unlinkat(dirFD, name, 0)
			unix.Close(dirFD)
		}
		if err != nil {
			a.Error = err.Error()
			return a
		}
		a.Done = true
		return a
	case "restore":
		if curErr == nil && cur.hash == a.Hash {
			a.Op, a.Note, a.Done = "skip", "already intact", true
			return a
		}
		meta, err := v.ContentVersion(a.Path, a.Hash)
		if err != nil {
			a.Error = err.Error()
			return a
		}
		target := rel
		if changedLater {
			a.Op = "keep-both"
			target = rel + ".restored-" + time.Now().UTC().Format("20060102T150405")
			a.AsPath = filepath.Join(root, target)
			a.Note = "changed after the incident: the vault's copy is beside it"
		}
		if dry {
			return a
		}
		if err := writeFile(v, rootFD, target, meta); err != nil {
			a.Error = err.Error()
			return a
		}
		a.Done = true
	}
	return a
}

type current struct {
	hash  string
	mtime time.Time
}

func currentState(rootFD int, rel string) (current, error) {
	fd, err := unix.Openat2(rootFD, rel, &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS})
	if err != nil {
		return current{}, err
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return current{}, errors.New("not a regular file")
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return current{}, err
	}
	return current{hash: hex.EncodeToString(h.Sum(nil)), mtime: st.ModTime()}, nil
}

// openParent opens (creating if asked) the directory holding rel beneath rootFD.
func openParent(rootFD int, rel string, create bool) (int, string, error) {
	dir, name := filepath.Split(rel)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		fd, err := unix.Dup(rootFD)
		return fd, name, err
	}
	how := &unix.OpenHow{Flags: unix.O_DIRECTORY | unix.O_RDONLY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS}
	fd, err := unix.Openat2(rootFD, dir, how)
	if err == unix.ENOENT && create {
		// Create missing folders one component at a time, each beneath the root.
		parts := strings.Split(dir, "/")
		for i := range parts {
			sub := strings.Join(parts[:i+1], "/")
			if err := unix.Mkdirat(rootFD, sub, 0o755); err != nil && err != unix.EEXIST {
				return -1, "", fmt.Errorf("mkdir %s: %w", sub, err)
			}
			if _, err := unix.Openat2(rootFD, sub, how); err != nil {
				return -1, "", fmt.Errorf("%s: %w", sub, err)
			}
		}
		fd, err = unix.Openat2(rootFD, dir, how)
	}
	if err != nil {
		return -1, "", fmt.Errorf("%s: %w (a symlink or missing folder)", dir, err)
	}
	return fd, name, nil
}

// writeFile writes the vault version to rel atomically (temp + rename)
// with its mode, owner and modification time.
func writeFile(v *vault.Vault, rootFD int, rel string, meta vault.Version) error {
	dirFD, name, err := openParent(rootFD, rel, true)
	if err != nil {
		return err
	}
	defer unix.Close(dirFD)
	tmp := fmt.Sprintf(".%s.killswitch-restore-%d", name, os.Getpid())
	fd, err := unix.Openat(dirFD, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), tmp)
	rc, err := v.OpenBlob(meta.Hash)
	if err == nil {
		_, err = io.Copy(f, rc)
		rc.Close()
	}
	if err == nil {
		err = f.Chmod(meta.Mode.Perm())
	}
	if err == nil {
		if cerr := f.Chown(meta.UID, meta.GID); cerr != nil && os.Geteuid() == 0 {
			err = cerr
		}
	}
	if err == nil {
		ts := []unix.Timespec{unix.NsecToTimespec(meta.MTime.UnixNano()), unix.NsecToTimespec(meta.MTime.UnixNano())}
		err = unix.UtimesNanoAt(dirFD, tmp, ts, unix.AT_SYMLINK_NOFOLLOW)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Renameat(dirFD, tmp, dirFD, name)
	}
	if err != nil {
		unix.Unlinkat(dirFD, tmp, 0)
		return err
	}
	return nil
}
