package guard

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigRefused(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "protected")
	vaultDir := filepath.Join(dir, "vault")
	file := filepath.Join(dir, "file")
	os.Mkdir(root, 0o755)
	os.WriteFile(file, nil, 0o644)
	self, _ := os.Executable()
	tool := filepath.Join(root, "bin", "tool")
	os.MkdirAll(filepath.Dir(tool), 0o755)
	if b, err := os.ReadFile("/bin/true"); err == nil {
		os.WriteFile(tool, b, 0o755)
	}
	// The folder the loader really is in (/lib64's entry is a symlink).
	loader, err := filepath.EvalSymlinks(elfInterpreter("/bin/true"))
	if err != nil {
		t.Fatalf("the loader of /bin/true: %v", err)
	}
	loaderRoot := filepath.Dir(loader)

	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no folder", Config{VaultDir: vaultDir}, "no folder to protect"},
		{"no vault", Config{Roots: []string{root}}, "no vault folder"},
		{"missing folder", Config{Roots: []string{filepath.Join(dir, "nope")}, VaultDir: vaultDir}, "no such file"},
		{"a file", Config{Roots: []string{file}, VaultDir: vaultDir}, "is not a folder"},
		{"vault inside", Config{Roots: []string{root}, VaultDir: filepath.Join(root, "v")}, "must be outside"},
		{"vault around", Config{Roots: []string{root}, VaultDir: dir}, "must be outside"},
		{"holds killswitch", Config{Roots: []string{filepath.Dir(self)}, VaultDir: vaultDir}, "holds " + self},
		{"holds a program it starts", Config{Roots: []string{root}, VaultDir: vaultDir, Programs: []string{tool}}, "holds " + tool},
		{"holds the loader", Config{Roots: []string{loaderRoot}, VaultDir: vaultDir, Programs: []string{"/bin/true"}}, "holds " + loader + ", the loader of"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.cfg)
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Check = %v, want ErrConfig containing %q", err, tc.want)
			}
		})
	}
	if err := Check(Config{Roots: []string{root}, VaultDir: vaultDir, Programs: []string{"/bin/true", "not-installed-anywhere"}}); err != nil {
		t.Errorf("a good configuration was refused: %v", err)
	}
}
