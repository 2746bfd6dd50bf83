package guard

import (
	"debug/elf"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/killswitch-dev/killswitch/internal/vault"
)

// checkPrograms refuses protected folders that hold a program this
// process starts, or the ELF loader that program needs. The guard answers
// every open in its folders from its own event loop; a Go process starting
// a program uses vfork, and if the child's exec had to wait for that same
// process's answer while the runtime stops the world, neither would ever
// move again, and every open in the protected folders would hang with
// them.
func checkPrograms(roots, programs []string) error {
	for _, p := range programs {
		if p == "" {
			continue
		}
		path, err := exec.LookPath(p)
		if err != nil {
			continue // not installed: it will never be started
		}
		files := map[string]string{path: "a program the guard starts"}
		if interp := elfInterpreter(path); interp != "" {
			files[interp] = "the loader of " + path + ", which the guard starts"
		}
		for f, what := range files {
			if real, err := filepath.EvalSymlinks(f); err == nil {
				f = real
			}
			if abs, err := filepath.Abs(f); err == nil {
				f = abs
			}
			for _, r := range roots {
				if vault.Under(f, r) {
					return fmt.Errorf("%w: the protected folder %s holds %s, %s; "+
						"a process must not start programs from folders whose opens it answers, or both can hang: "+
						"protect narrower folders", ErrConfig, r, f, what)
				}
			}
		}
	}
	return nil
}

// elfInterpreter is the dynamic loader a program names (PT_INTERP), or ""
// for a static program or one that cannot be read.
func elfInterpreter(path string) string {
	f, err := elf.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(p.Open(), 4096))
		if err != nil {
			return ""
		}
		return strings.TrimRight(string(b), "\x00")
	}
	return ""
}
