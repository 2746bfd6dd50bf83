package vault

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkCommit: the index cost of one version committed on its own,
// as when the permission path must wait for a row (Queue, then Flush).
// go test -bench Commit -benchtime 5000x -count 5 ./internal/vault
func BenchmarkCommit(b *testing.B) {
	for _, batch := range []int{1, 16} {
		b.Run(fmt.Sprintf("rows=%d", batch), func(b *testing.B) {
			v, err := Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer v.Close()
			rows := make([]Version, batch)
			for i := 0; b.Loop(); i++ {
				for j := range rows {
					rows[j] = Version{Path: fmt.Sprintf("/srv/share/ward-%d-%d.txt", i, j), Time: time.Now(), Kind: Content,
						Hash: "0b510374be2b78fd16cdac8d31fca906701c3875b61570ff69d3023ce27a727d", Size: 4096, Mode: 0o644, MTime: time.Now(),
						Actor: "1234@5678", Exe: "/usr/bin/vim", Reason: "close-write"}
				}
				v.Queue(rows...)
				if err := v.Flush(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
