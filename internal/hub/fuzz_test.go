package hub

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/killswitch-dev/killswitch/internal/hub/store"
)

// FuzzReports: whatever an agent (or someone holding its key) posts, the
// hub answers without a server error, and a refused batch changes nothing.
func FuzzReports(f *testing.F) {
	f.Add([]byte(`{"version":"1","reports":[{"id":"r1","kind":"incident","key":"ks-1","body":{"state":"open","client":"10.0.0.1"}}]}`))
	f.Add([]byte(`{"reports":[{"id":"r2","kind":"scan","key":"10.0.0.1:445","body":{"ms17_010":"vulnerable"}},{"id":"","kind":"scan","key":"x","body":{}}]}`))
	f.Add([]byte(`{"reports":[{"id":"r3","kind":"sinkhole","key":"10.0.0.9@t1","body":{"source":{"ip":"10.0.0.9"}}}]}`))
	f.Add([]byte(`{"reports":[{"id":"r4","kind":"exec-blocked","key":"exec-ab","body":{"count":1}}],"extra":1}`))
	ctx := context.Background()
	h, err := Open(ctx, Config{Listen: "127.0.0.1:0", DataDir: f.TempDir(), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	defer h.Close()
	host := store.Host{ID: "ward-3", Name: "ward-3-pc", Enrolled: time.Now(), CertSerial: "1"}
	if err := h.Store.AddHost(ctx, host); err != nil {
		f.Fatal(err)
	}
	state := func() (int, int) {
		incs, _ := h.Store.Incidents(ctx, 100_000)
		scans, _ := h.Store.ScanResults(ctx)
		return len(incs), len(scans)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		incs, scans := state()
		w := httptest.NewRecorder()
		h.handleReports(w, httptest.NewRequest(http.MethodPost, "/api/agent/reports", bytes.NewReader(body)), host)
		if w.Code >= 500 {
			t.Fatalf("status %d for %q: %s", w.Code, body, w.Body)
		}
		if w.Code != http.StatusOK {
			if i, s := state(); i != incs || s != scans {
				t.Fatalf("refused (%d) but the store changed: incidents %d -> %d, scans %d -> %d", w.Code, incs, i, scans, s)
			}
		}
	})
}
