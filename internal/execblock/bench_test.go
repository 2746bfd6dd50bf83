package execblock

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// The cost an execution pays for the blocker, run with
//
//	go test -bench Exec -benchtime 300x ./internal/execblock
//
// Unwatched: a tmpfs without marks. Clean: the same binary again (the
// kernel's ignore mark answers). New: a fresh copy each time (hashed).
func BenchmarkExecUnwatched(b *testing.B) {
	dir := tmpfs(b)
	tool, _ := install(b, dir, "tool", "/bin/true", nil)
	benchRuns(b, func(int) string { return tool })
}

func BenchmarkExecClean(b *testing.B) {
	dir, p, _ := lab(b, Config{})
	_, other := install(b, dir, "other", "/bin/false", nil)
	p.Block(bg, other, "")
	tool, _ := install(b, dir, "tool", "/bin/true", nil)
	benchRuns(b, func(int) string { return tool })
}

func BenchmarkExecNew(b *testing.B) {
	dir, p, _ := lab(b, Config{})
	_, other := install(b, dir, "other", "/bin/false", nil)
	p.Block(bg, other, "")
	data, _ := os.ReadFile("/bin/true")
	paths := make([]string, b.N)
	for i := range paths {
		paths[i] = filepath.Join(dir, fmt.Sprint("tool-", i))
		os.WriteFile(paths[i], append(data, byte(i), byte(i>>8), byte(i>>16)), 0o755)
	}
	benchRuns(b, func(i int) string { return paths[i] })
}

func benchRuns(b *testing.B, path func(int) string) {
	b.ResetTimer()
	for i := range b.N {
		if err := runs(path(i)); err != nil {
			b.Fatal(err)
		}
	}
}
