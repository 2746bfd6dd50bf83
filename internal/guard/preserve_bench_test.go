package guard

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/killswitch-dev/killswitch/internal/vault"
)

// BenchmarkCatchUp measures the permission path's work when an open finds
// a file whose current version the vault does not hold yet: copy it into
// the vault before answering. (When the vault holds it, the guard's own
// p50/p99 printed by bench/guard.sh apply.)
func BenchmarkCatchUp(b *testing.B) {
	for _, size := range []int{4 << 10, 1 << 20, 16 << 20} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			base := b.TempDir()
			g, err := New(Config{Roots: []string{base}, VaultDir: filepath.Join(b.TempDir(), "vault")})
			if err != nil {
				b.Fatal(err)
			}
			if g.vault, err = vault.Open(g.cfg.VaultDir); err != nil {
				b.Fatal(err)
			}
			defer g.vault.Close()
			content := make([]byte, size)
			p := filepath.Join(base, "f")
			b.SetBytes(int64(size))
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				rand.Read(content[:64]) // a new version each time
				os.WriteFile(p, content, 0o644)
				f, _ := os.Open(p)
				b.StartTimer()
				if _, err := g.preserve(int(f.Fd()), p, "catch-up", "", ""); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				f.Close()
				b.StartTimer()
			}
		})
	}
}
