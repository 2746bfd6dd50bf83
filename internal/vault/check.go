package vault

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Report is what Check found.
type Report struct {
	Versions     int      `json:"versions"`
	Blobs        int      `json:"blobs"`
	Bytes        int64    `json:"bytes"`
	Missing      []string `json:"missing,omitempty"` // hashes named by the index but absent
	Corrupt      []string `json:"corrupt,omitempty"` // blobs that do not decode to their hash
	Orphans      []string `json:"orphans,omitempty"` // blobs no row names (harmless: a crash between blob and row)
	IndexProblem string   `json:"index_problem,omitempty"`
}

// OK reports whether nothing is lost or damaged (orphans are fine).
func (r Report) OK() bool { return len(r.Missing) == 0 && len(r.Corrupt) == 0 && r.IndexProblem == "" }

// Check verifies the index's integrity and every blob's content.
func (v *Vault) Check() (Report, error) {
	var r Report
	var res string
	if err := v.db.QueryRow(`PRAGMA integrity_check`).Scan(&res); err != nil || res != "ok" {
		r.IndexProblem = fmt.Sprintf("integrity_check: %s %v", res, err)
	}
	vs, err := v.query(`SELECT ` + cols + ` FROM versions`)
	if err != nil {
		r.IndexProblem = err.Error()
	}
	r.Versions = len(vs)
	named := map[string]bool{}
	for _, x := range vs {
		if x.Kind == Content {
			named[x.Hash] = true
		}
	}
	seen := map[string]bool{}
	err = filepath.WalkDir(filepath.Join(v.dir, "blobs"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		h := strings.TrimSuffix(d.Name(), rawSuffix)
		info, _ := d.Info()
		if info != nil {
			r.Bytes += info.Size()
		}
		r.Blobs++
		seen[h] = true
		if !validHash(h) || !named[h] {
			r.Orphans = append(r.Orphans, h)
			return nil
		}
		rc, err := v.OpenBlob(h)
		if err == nil {
			_, err = io.Copy(io.Discard, rc)
			rc.Close()
		}
		if err != nil {
			r.Corrupt = append(r.Corrupt, h)
		}
		return nil
	})
	if err != nil {
		return r, fmt.Errorf("vault check: %w", err)
	}
	for h := range named {
		if !seen[h] {
			r.Missing = append(r.Missing, h)
		}
	}
	return r, nil
}

// Prune applies retention: content versions older than maxAge, and then
// the oldest ones while the vault exceeds maxBytes, are dropped, except the
// newest version of each path and every version an open incident needs.
// Blobs no longer named are deleted. Zero limits disable that rule.
func (v *Vault) Prune(maxAge time.Duration, maxBytes int64, now time.Time) (removed int, err error) {
	keep := map[string]bool{}
	incs, err := v.Incidents()
	if err != nil {
		return 0, err
	}
	for _, inc := range incs {
		if inc.State != StateOpen {
			continue
		}
		for _, f := range inc.Files {
			keep[f.PreHash] = true
		}
	}
	vs, err := v.query(`SELECT ` + cols + ` FROM versions v WHERE kind='content'
		AND id <> (SELECT id FROM versions w WHERE w.path=v.path ORDER BY time DESC, id DESC LIMIT 1)
		ORDER BY time`)
	if err != nil {
		return 0, err
	}
	var total int64
	if maxBytes > 0 {
		r, err := v.Check()
		if err != nil {
			return 0, err
		}
		total = r.Bytes
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, x := range vs {
		old := maxAge > 0 && now.Sub(x.Time) > maxAge
		big := maxBytes > 0 && total > maxBytes
		if (!old && !big) || keep[x.Hash] {
			continue
		}
		if _, err := v.db.Exec(`DELETE FROM versions WHERE id=?`, x.ID); err != nil {
			return removed, fmt.Errorf("vault prune: %w", err)
		}
		removed++
		var n int
		if err := v.db.QueryRow(`SELECT count(*) FROM versions WHERE hash=?`, x.Hash).Scan(&n); err == nil && n == 0 {
			if st, err := os.Stat(v.blobPath(x.Hash)); err == nil {
				total -= st.Size()
			}
			os.Remove(v.blobPath(x.Hash))
			if st, err := os.Stat(v.rawPath(x.Hash)); err == nil {
				total -= st.Size()
			}
			os.Remove(v.rawPath(x.Hash))
		}
	}
	return removed, nil
}
