package hub

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/killswitch-dev/killswitch/internal/hub/pki"
	"github.com/killswitch-dev/killswitch/internal/hub/store"
)

// Config says where the hub listens and keeps its state.
type Config struct {
	Listen  string   // e.g. ":8443"
	DataDir string   // CA and, by default, the SQLite database
	DB      string   // postgres://... or a SQLite path; "" is DataDir/hub.db
	Names   []string // host names and addresses in the server certificate
	// Webhook receives a Slack-compatible JSON message for each new incident.
	Webhook string
	Log     *slog.Logger
}

// Limits on what one request may cost.
const (
	maxBody         = 4 << 20 // one report batch
	maxReports      = 500     // reports in one batch
	agentRate       = 5       // requests per second per host, burst agentBurst
	agentBurst      = 20
	enrolRate       = 10 // enrolments per second, all together
	loginRate       = 1  // failed sign-ins per second per address, burst 5
	onlineAfter     = 30 * time.Second
	TokenTTLDefault = 24 * time.Hour
)

// Hub is a running hub.
type Hub struct {
	cfg     Config
	Store   store.Store
	CA      *pki.CA
	srv     *http.Server
	ln      net.Listener
	log     *slog.Logger
	metrics *metrics
	enrol   *rate.Limiter

	mu      sync.Mutex
	perHost map[string]*rate.Limiter
	perIP   map[string]*rate.Limiter
	wg      sync.WaitGroup
	hooks   chan store.Incident

	// pending holds the hosts with queued actions, refreshed from the
	// database every pendingRefresh (so that actions queued through another
	// hub sharing the database are seen too): a heartbeat from any other
	// host needs no database round trip.
	pending   atomic.Pointer[map[string]bool]
	pendingMu sync.Mutex // serialises markPending's copies

	seenMu sync.Mutex
	seen   map[string]store.Heartbeat // heartbeats not yet written
	auth   sync.Map                   // host id -> authEntry
}

// authEntry caches a host record for authTTL, so that a heartbeat costs
// no database read. A revocation through this hub takes effect at once (the
// entry is dropped); through another hub sharing the database, within
// authTTL.
type authEntry struct {
	host store.Host
	at   time.Time
}

const (
	authTTL        = 30 * time.Second
	pendingRefresh = 500 * time.Millisecond
	seenFlush      = time.Second // heartbeats are written in one transaction per second
)

// Open prepares a hub: CA, store, and (unless Listen is empty) the TLS
// listener. Serve starts it; Close releases a hub that was not served.
func Open(ctx context.Context, cfg Config) (*Hub, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	ca, err := pki.LoadOrCreate(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	dsn := cfg.DB
	if dsn == "" {
		dsn = cfg.DataDir + "/hub.db"
	}
	st, err := store.Open(ctx, dsn)
	if err != nil {
		return nil, err
	}
	names := cfg.Names
	if len(names) == 0 {
		names = []string{"localhost", "127.0.0.1", "::1"}
	}
	cert, err := ca.ServerCert(names)
	if err != nil {
		st.Close()
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	tlsCfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		// Browsers and enrolling agents come without a certificate; agent
		// endpoints require one (checked per request).
		ClientAuth: tls.VerifyClientCertIfGiven,
		MinVersion: tls.VersionTLS12,
	}
	h := &Hub{cfg: cfg, Store: st, CA: ca, log: cfg.Log, metrics: newMetrics(),
		enrol: rate.NewLimiter(enrolRate, enrolRate), perHost: map[string]*rate.Limiter{}, perIP: map[string]*rate.Limiter{},
		hooks: make(chan store.Incident, 256), seen: map[string]store.Heartbeat{}}
	h.pending.Store(&map[string]bool{})
	if cfg.Listen == "" { // administration only: tokens, users
		return h, nil
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		st.Close()
		return nil, err
	}
	h.ln = tls.NewListener(ln, tlsCfg)
	h.srv = &http.Server{Handler: h.routes(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 60 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(cfg.Log.Handler(), slog.LevelDebug)}
	return h, nil
}

// Close releases the store of a hub that is not serving.
func (h *Hub) Close() error { return h.Store.Close() }

// Addr is the listening address.
func (h *Hub) Addr() string { return h.ln.Addr().String() }

// URL is https://ADDR.
func (h *Hub) URL() string { return "https://" + h.Addr() }

// Start serves in the background (drills, tests) until stop is called,
// which returns what Serve returned. stop may be called more than once.
func (h *Hub) Start() (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Serve(ctx) }()
	return sync.OnceValue(func() error { cancel(); return <-done })
}

// Serve runs until ctx ends.
func (h *Hub) Serve(ctx context.Context) error {
	h.wg.Add(3)
	go func() { defer h.wg.Done(); h.webhooks(ctx) }()
	go func() { defer h.wg.Done(); h.flushSeen(ctx) }()
	go func() { defer h.wg.Done(); h.refreshPending(ctx) }()
	errc := make(chan error, 1)
	go func() { errc <- h.srv.Serve(h.ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := h.srv.Shutdown(sctx)
	h.wg.Wait()
	h.Store.Close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func (h *Hub) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/enroll", h.handleEnroll)
	mux.HandleFunc("POST /v1/agent/reports", h.agent(h.handleReports))
	mux.Handle("GET /metrics", h.metrics.handler())
	h.consoleRoutes(mux)
	return mux
}

// NewToken makes a one-time enrolment token. The token carries the
// fingerprint of the hub's CA so that the agent can trust the hub on first
// contact without trusting the network.
func (h *Hub) NewToken(ctx context.Context, ttl time.Duration) (string, error) {
	secret := store.NewID()
	if err := h.Store.CreateToken(ctx, hashSecret(secret), time.Now().Add(ttl)); err != nil {
		return "", err
	}
	return FormatToken(secret, h.CA.Cert.Raw), nil
}

// FormatToken spells a token: ks1.SECRET.SHA256(CA certificate).
func FormatToken(secret string, caDER []byte) string {
	sum := sha256.Sum256(caDER)
	return "ks1." + secret + "." + hex.EncodeToString(sum[:])
}

func hashSecret(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func (h *Hub) limiter(m map[string]*rate.Limiter, key string, r rate.Limit, burst int) *rate.Limiter {
	h.mu.Lock()
	defer h.mu.Unlock()
	l := m[key]
	if l == nil {
		if len(m) > 100_000 { // bounded: forget everyone rather than grow without end
			clear(m)
		}
		l = rate.NewLimiter(r, burst)
		m[key] = l
	}
	return l
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (h *Hub) audit(ctx context.Context, actor, action, target, detail string) {
	if err := h.Store.AddAudit(ctx, store.AuditEntry{Time: time.Now(), Actor: actor, Action: action, Target: target, Detail: detail}); err != nil {
		h.log.Error("audit", "err", err)
	}
}

func httpError(w http.ResponseWriter, code int, format string, args ...any) {
	http.Error(w, fmt.Sprintf(format, args...), code)
}

// RestoreAndWait queues a restore of the host's incident as actor and
// waits until the agent reports it done (nil) or failed.
func (h *Hub) RestoreAndWait(ctx context.Context, actor, hostID, incident string) error {
	a := store.Action{ID: store.NewID(), HostID: hostID, Kind: "restore", Args: incident, CreatedBy: actor, Created: time.Now()}
	if err := h.Store.QueueAction(ctx, a); err != nil {
		return err
	}
	h.markPending(hostID)
	h.audit(ctx, actor, "queue-restore", hostID, incident)
	return h.WaitAction(ctx, a.ID)
}

// WaitAction waits for an action to end.
func (h *Hub) WaitAction(ctx context.Context, id string) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		acts, err := h.Store.Actions(ctx, 1000)
		if err != nil {
			return err
		}
		for _, a := range acts {
			if a.ID != id {
				continue
			}
			switch a.State {
			case store.ActionDone:
				return nil
			case store.ActionFailed:
				return fmt.Errorf("restore failed on the host: %s", a.Result)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// noteSeen queues a heartbeat for the next flush.
func (h *Hub) noteSeen(b store.Heartbeat) {
	h.seenMu.Lock()
	h.seen[b.HostID] = b
	h.seenMu.Unlock()
}

// flushSeen writes the queued heartbeats every second, and once more on
// the way out.
func (h *Hub) flushSeen(ctx context.Context) {
	t := time.NewTicker(seenFlush)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		h.seenMu.Lock()
		beats := make([]store.Heartbeat, 0, len(h.seen))
		for _, b := range h.seen {
			beats = append(beats, b)
		}
		clear(h.seen)
		h.seenMu.Unlock()
		if err := h.Store.SeenMany(context.WithoutCancel(ctx), beats); err != nil {
			h.log.Error("heartbeats", "err", err)
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// agentHost looks a host up through the short-lived cache.
func (h *Hub) agentHost(ctx context.Context, id string) (store.Host, error) {
	if e, ok := h.auth.Load(id); ok && time.Since(e.(authEntry).at) < authTTL {
		return e.(authEntry).host, nil
	}
	host, err := h.Store.Host(ctx, id)
	if err == nil {
		h.auth.Store(id, authEntry{host, time.Now()})
	}
	return host, err
}

func (h *Hub) refreshPending(ctx context.Context) {
	t := time.NewTicker(pendingRefresh)
	defer t.Stop()
	for {
		if ids, err := h.Store.QueuedHosts(ctx); err == nil {
			m := make(map[string]bool, len(ids))
			for _, id := range ids {
				m[id] = true
			}
			h.pending.Store(&m)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// markPending makes the hosts' next heartbeats collect their actions at
// once. (The map is copied, once per call: heartbeats read it unlocked.)
func (h *Hub) markPending(hostIDs ...string) {
	h.pendingMu.Lock()
	defer h.pendingMu.Unlock()
	old := *h.pending.Load()
	m := make(map[string]bool, len(old)+len(hostIDs))
	for k := range old {
		m[k] = true
	}
	for _, id := range hostIDs {
		m[id] = true
	}
	h.pending.Store(&m)
}

// hasPending reports whether the host may have actions waiting.
func (h *Hub) hasPending(hostID string) bool { return (*h.pending.Load())[hostID] }
