package simulate

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"time"

	"golang.org/x/sys/unix"
)

// Profile is one behaviour family.
type Profile struct {
	Name, About string
	run         func(s *sim) error
}

// Profiles lists every behaviour, WannaCry's own first.
func Profiles() []Profile {
	return []Profile{
		{"wannacry", "WannaCry: writes name.WNCRYT, renames it to .WNCRY, deletes the original, drops @Please_Read_Me@.txt in each folder", wannacry},
		{"inplace", "overwrites each file in place with AES-CTR ciphertext", perFile(encryptFull)},
		{"intermittent", "LockFile-style: encrypts every other 16 bytes in place", perFile(encryptStripes)},
		{"headonly", "LockBit 2.0-style: encrypts only the first 4 KB of each file", perFile(encryptHead)},
		{"base64", "encrypts, then base64-encodes, so byte entropy stays near 6 bits", perFile(encryptBase64)},
		{"entropy-sharing", "interleaves ciphertext with zero bytes so the histogram looks tame", perFile(encryptInterleaved)},
		{"process-per-file", "one child process per file, each encrypting a single file in place", processPerFile},
		{"slow", "encrypts in place, one file every 1.5 s (low and slow)", slow},
		{"copy-delete", "Linux.Encoder-style: writes name.encrypted, deletes the original", copyDelete},
		{"rename-over", "writes ciphertext to a temporary file and renames it over the original", renameOver},
		{"mmap", "encrypts in place through a shared memory mapping", perFile(encryptMmap)},
		{"wiper", "overwrites every file with zeros", perFile(wipe)},
	}
}

// Find returns the named profile.
func Find(name string) (Profile, error) {
	var names []string
	for _, p := range Profiles() {
		if p.Name == name {
			return p, nil
		}
		names = append(names, p.Name)
	}
	return Profile{}, fmt.Errorf("simulate: unknown profile %q (known: %v)", name, names)
}

type sim struct {
	dir   string
	m     Manifest
	block cipher.Block
	log   io.Writer
	self  string // executable, for process-per-file
	done  int
}

// Run runs profile against the corpus in dir. It stops at the first error
// (a denied open means the guard stopped us).
func Run(p Profile, dir string, log io.Writer) error {
	m, err := LoadManifest(dir)
	if err != nil {
		return err
	}
	key := make([]byte, 32)
	rand.Read(key)
	blk, _ := aes.NewCipher(key)
	self, _ := os.Executable()
	s := &sim{dir: dir, m: m, block: blk, log: log, self: self}
	err = p.run(s)
	fmt.Fprintf(log, "simulate %s: touched %d files\n", p.Name, s.done)
	return err
}

// files returns the corpus's files that still exist, in folder order.
func (s *sim) files() []string {
	var out []string
	for _, rel := range s.m.Sorted() {
		p := filepath.Join(s.dir, rel)
		if st, err := os.Lstat(p); err == nil && st.Mode().IsRegular() {
			out = append(out, p)
		}
	}
	return out
}

func (s *sim) encrypt(b []byte) []byte {
	iv := make([]byte, aes.BlockSize)
	rand.Read(iv)
	out := make([]byte, len(b))
	cipher.NewCTR(s.block, iv).XORKeyStream(out, b)
	return out
}

func perFile(f func(s *sim, path string) error) func(*sim) error {
	return func(s *sim) error {
		for _, p := range s.files() {
			if err := f(s, p); err != nil {
				return err
			}
			s.done++
		}
		return nil
	}
}

// rewrite reads a file and writes transform(content) back in place.
func (s *sim) rewrite(p string, transform func([]byte) []byte) error {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return err
	}
	out := transform(b)
	if _, err := f.WriteAt(out, 0); err != nil {
		return err
	}
	return f.Truncate(int64(len(out)))
}

func encryptFull(s *sim, p string) error { return s.rewrite(p, s.encrypt) }

func encryptStripes(s *sim, p string) error {
	return s.rewrite(p, func(b []byte) []byte {
		ct := s.encrypt(b)
		out := append([]byte(nil), b...)
		for i := 0; i < len(b); i += 32 {
			copy(out[i:min(i+16, len(b))], ct[i:min(i+16, len(b))])
		}
		return out
	})
}

func encryptHead(s *sim, p string) error {
	return s.rewrite(p, func(b []byte) []byte {
		n := min(4096, len(b))
		out := append([]byte(nil), b...)
		copy(out, s.encrypt(b[:n]))
		return out
	})
}

func encryptBase64(s *sim, p string) error {
	return s.rewrite(p, func(b []byte) []byte {
		return []byte(base64.StdEncoding.EncodeToString(s.encrypt(b)))
	})
}

func encryptInterleaved(s *sim, p string) error {
	return s.rewrite(p, func(b []byte) []byte {
		ct := s.encrypt(b)
		out := make([]byte, 0, 2*len(ct))
		for _, c := range ct {
			out = append(out, c, 0)
		}
		return out
	})
}

func wipe(s *sim, p string) error {
	return s.rewrite(p, func(b []byte) []byte { return make([]byte, len(b)) })
}

func encryptMmap(s *sim, p string) error {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return err
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return err
	}
	copy(mem, s.encrypt(mem))
	unix.Msync(mem, unix.MS_SYNC)
	return unix.Munmap(mem)
}

const wannaNote = "Ooops, your important files are encrypted.\n(killswitch simulator: nothing was really encrypted for ransom; restore with killswitch restore)\n"

func wannacry(s *sim) error {
	noted := map[string]bool{}
	for _, p := range s.files() {
		dir := filepath.Dir(p)
		if !noted[dir] {
			noted[dir] = true
			if err := os.WriteFile(filepath.Join(dir, "@Please_Read_Me@.txt"), []byte(wannaNote), 0o644); err != nil {
				return err
			}
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out := append([]byte("WANACRY!"), s.encrypt(b)...)
		if err := os.WriteFile(p+".WNCRYT", out, 0o644); err != nil {
			return err
		}
		if err := os.Rename(p+".WNCRYT", p+".WNCRY"); err != nil {
			return err
		}
		if err := os.Remove(p); err != nil {
			return err
		}
		s.done++
	}
	return nil
}

func copyDelete(s *sim) error {
	for _, p := range s.files() {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.WriteFile(p+".encrypted", s.encrypt(b), 0o644); err != nil {
			return err
		}
		if err := os.Remove(p); err != nil {
			return err
		}
		s.done++
	}
	return nil
}

func renameOver(s *sim) error {
	for _, p := range s.files() {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		tmp := filepath.Join(filepath.Dir(p), fmt.Sprintf(".tmp-%d", s.done))
		if err := os.WriteFile(tmp, s.encrypt(b), 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, p); err != nil {
			return err
		}
		s.done++
	}
	return nil
}

func slow(s *sim) error {
	for i, p := range s.files() {
		if i > 0 {
			time.Sleep(1500 * time.Millisecond)
		}
		if err := encryptFull(s, p); err != nil {
			return err
		}
		s.done++
	}
	return nil
}

// processPerFile runs `killswitch simulate one-file DIR PATH` per file.
func processPerFile(s *sim) error {
	files := s.files()
	sort.Strings(files)
	for _, p := range files {
		cmd := exec.Command(s.self, "simulate", "one-file", s.dir, p)
		cmd.Stderr = s.log
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("child for %s: %w", p, err)
		}
		s.done++
	}
	return nil
}

// OneFile encrypts a single corpus file in place (the child of process-per-file).
func OneFile(dir, path string) error {
	m, err := LoadManifest(dir)
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(dir, path)
	if _, ok := m.Files[rel]; err != nil || !ok {
		return fmt.Errorf("simulate: %s is not a file of the corpus %s", path, dir)
	}
	key := make([]byte, 32)
	rand.Read(key)
	blk, _ := aes.NewCipher(key)
	s := &sim{dir: dir, m: m, block: blk}
	return encryptFull(s, path)
}
