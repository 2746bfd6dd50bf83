package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite"

	"github.com/killswitch-dev/killswitch/internal/hub"
	"github.com/killswitch-dev/killswitch/internal/hub/pki"
	"github.com/killswitch-dev/killswitch/internal/hub/store"
)

// Config says how to reach the hub and where to keep the agent's state.
type Config struct {
	StateDir string // key, certificates, identity, outbox
	Hub      string // https://HOST:PORT; remembered after enrolment
	Token    string // the one-time token, needed only to enrol
	Name     string // the host's name in the console
	Version  string
	// Interval between heartbeats (default 10 s).
	Interval time.Duration
	// Actions runs what the hub asks; nil refuses every action.
	Actions Executor
	Log     *slog.Logger
}

// Executor runs one action and says what came of it.
type Executor interface {
	Run(ctx context.Context, a store.Action) (ok bool, result string)
	Isolated() bool
}

type identity struct {
	HostID string `json:"host_id"`
	Hub    string `json:"hub"`
}

// Agent is a host's link to the hub.
type Agent struct {
	cfg    Config
	id     identity
	client *http.Client
	db     *sql.DB
	log    *slog.Logger
	wake   chan struct{}

	mu          sync.Mutex
	lastContact time.Time
}

// ErrNotEnrolled: no identity on disk and no token to make one.
var ErrNotEnrolled = errors.New("agent: not enrolled (give --hub and --token once)")

// Open loads the agent's identity, enrolling first if there is none.
func Open(ctx context.Context, cfg Config) (*Agent, error) {
	if cfg.Interval == 0 {
		cfg.Interval = 10 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, log: cfg.Log, wake: make(chan struct{}, 1)}
	idPath := filepath.Join(cfg.StateDir, "identity.json")
	if b, err := os.ReadFile(idPath); err == nil {
		if err := json.Unmarshal(b, &a.id); err != nil {
			return nil, fmt.Errorf("agent: %s: %w", idPath, err)
		}
		if cfg.Hub != "" && strings.TrimSuffix(cfg.Hub, "/") != a.id.Hub {
			return nil, fmt.Errorf("agent: enrolled with %s, not %s (remove %s to enrol again)", a.id.Hub, cfg.Hub, cfg.StateDir)
		}
	} else {
		if cfg.Hub == "" || cfg.Token == "" {
			return nil, ErrNotEnrolled
		}
		if err := a.enrol(ctx); err != nil {
			return nil, err
		}
	}
	if err := a.loadClient(); err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(cfg.StateDir, "outbox.db")+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_pragma=synchronous(FULL)")
	if err != nil {
		return nil, err
	}
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, kind TEXT NOT NULL,
		key TEXT NOT NULL, time INTEGER NOT NULL, body TEXT NOT NULL)`); err != nil {
		db.Close()
		return nil, fmt.Errorf("agent: outbox: %w", err)
	}
	a.db = db
	return a, nil
}

// Hub is the hub's URL.
func (a *Agent) Hub() string { return a.id.Hub }

// HostID is the identity the hub gave this host.
func (a *Agent) HostID() string { return a.id.HostID }

// ParseToken splits ks1.SECRET.CAHASH.
func ParseToken(tok string) (secret string, caHash []byte, err error) {
	parts := strings.Split(strings.TrimSpace(tok), ".")
	if len(parts) != 3 || parts[0] != "ks1" || len(parts[1]) < 16 {
		return "", nil, errors.New("agent: token is not a killswitch enrolment token (ks1.SECRET.CAHASH)")
	}
	caHash, err = hex.DecodeString(parts[2])
	if err != nil || len(caHash) != sha256.Size {
		return "", nil, errors.New("agent: token's CA fingerprint is not a SHA-256")
	}
	return parts[1], caHash, nil
}

// pinned verifies the hub's chain against one CA, named by certificate or
// by fingerprint. Host names are not checked: the pin is stronger.
func pinned(pool *x509.CertPool, caHash []byte) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("hub sent no certificate")
		}
		if pool == nil {
			pool = x509.NewCertPool()
			for _, c := range cs.PeerCertificates {
				if sum := sha256.Sum256(c.Raw); bytes.Equal(sum[:], caHash) {
					pool.AddCert(c)
				}
			}
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		if err != nil {
			return fmt.Errorf("hub certificate is not from the CA the token names: %w", err)
		}
		return nil
	}
}

func (a *Agent) enrol(ctx context.Context) error {
	secret, caHash, err := ParseToken(a.cfg.Token)
	if err != nil {
		return err
	}
	keyPEM, csrPEM, err := pki.NewAgentKey(a.cfg.Name)
	if err != nil {
		return err
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, VerifyConnection: pinned(nil, caHash), MinVersion: tls.VersionTLS12}}
	defer tr.CloseIdleConnections()
	body, _ := json.Marshal(hub.EnrolRequest{Token: secret, Name: a.cfg.Name, CSR: string(csrPEM)})
	hubURL := strings.TrimSuffix(a.cfg.Hub, "/")
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, hubURL+"/v1/enroll", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("agent: enrol: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("agent: enrol refused: %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	var er hub.EnrolResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&er); err != nil {
		return fmt.Errorf("agent: enrol reply: %w", err)
	}
	files := map[string][]byte{"key.pem": keyPEM, "cert.pem": []byte(er.Cert), "ca.pem": []byte(er.CA)}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(a.cfg.StateDir, name), b, 0o600); err != nil {
			return err
		}
	}
	a.id = identity{HostID: er.HostID, Hub: hubURL}
	idb, _ := json.Marshal(a.id)
	return os.WriteFile(filepath.Join(a.cfg.StateDir, "identity.json"), idb, 0o600)
}

func (a *Agent) loadClient() error {
	dir := a.cfg.StateDir
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return errors.New("agent: ca.pem holds no certificate")
	}
	a.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{Certificates: []tls.Certificate{pair}, InsecureSkipVerify: true, VerifyConnection: pinned(pool, nil), MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 2, IdleConnTimeout: time.Minute,
	}}
	return nil
}

// Report queues a report durably; it reaches the hub once, in order.
func (a *Agent) Report(kind, key string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	_, err = a.db.Exec(`INSERT INTO outbox (id, kind, key, time, body) VALUES (?, ?, ?, ?, ?)`, store.NewID(), kind, key, time.Now().UnixNano(), string(b))
	if err != nil {
		return fmt.Errorf("agent: outbox: %w", err)
	}
	select {
	case a.wake <- struct{}{}:
	default:
	}
	return nil
}

// Close releases the outbox; call it after Run has returned.
func (a *Agent) Close() error { return a.db.Close() }

// Pending is the number of reports not yet acknowledged.
func (a *Agent) Pending() int {
	var n int
	a.db.QueryRow(`SELECT count(*) FROM outbox`).Scan(&n)
	return n
}

// LastContact is when the hub last answered.
func (a *Agent) LastContact() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lastContact
}

// Run sends heartbeats and reports and runs actions until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	defer a.client.CloseIdleConnections()
	actions := make(chan store.Action, 64)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); a.runActions(ctx, actions) }()
	defer wg.Wait()
	backoff := time.Second
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-a.wake:
		}
		more, err := a.sync(ctx, actions)
		next := a.cfg.Interval
		switch {
		case err != nil:
			a.log.Warn("hub unreachable; reports wait in the outbox", "err", err, "pending", a.Pending())
			next, backoff = backoff, min(backoff*2, a.cfg.Interval)
		case more:
			next, backoff = 0, time.Second
		default:
			backoff = time.Second
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(next)
	}
}

// sync posts the oldest reports (or none, as a heartbeat), drops the ones
// acknowledged, and queues the actions handed back. more says the outbox
// still holds reports.
func (a *Agent) sync(ctx context.Context, actions chan<- store.Action) (more bool, err error) {
	rows, err := a.db.QueryContext(ctx, `SELECT seq, id, kind, key, time, body FROM outbox ORDER BY seq LIMIT 100`)
	if err != nil {
		return false, err
	}
	batch := hub.ReportBatch{Version: a.cfg.Version, Reports: []store.Report{}}
	if a.cfg.Actions != nil {
		batch.Isolated = a.cfg.Actions.Isolated()
	}
	for rows.Next() {
		var r store.Report
		var t int64
		var body string
		if err := rows.Scan(&r.Seq, &r.ID, &r.Kind, &r.Key, &t, &body); err != nil {
			rows.Close()
			return false, err
		}
		r.Time, r.Body = time.Unix(0, t), json.RawMessage(body)
		batch.Reports = append(batch.Reports, r)
	}
	rows.Close()
	body, _ := json.Marshal(batch)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.id.Hub+"/v1/agent/reports", bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return false, fmt.Errorf("hub: %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	var reply hub.ReportReply
	if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&reply); err != nil {
		return false, fmt.Errorf("hub reply: %w", err)
	}
	a.mu.Lock()
	a.lastContact = time.Now()
	a.mu.Unlock()
	for _, id := range reply.Acked {
		if _, err := a.db.Exec(`DELETE FROM outbox WHERE id = ?`, id); err != nil {
			return false, err
		}
	}
	for _, act := range reply.Actions {
		select {
		case actions <- act:
		default:
			a.Report(store.KindActionResult, act.ID, map[string]any{"ok": false, "result": "agent busy: too many actions at once"})
		}
	}
	return len(batch.Reports) == 100 && len(reply.Acked) == 100, nil
}

func (a *Agent) runActions(ctx context.Context, actions <-chan store.Action) {
	for {
		select {
		case <-ctx.Done():
			return
		case act := <-actions:
			ok, result := false, "this agent runs no actions"
			if a.cfg.Actions != nil {
				ok, result = a.cfg.Actions.Run(ctx, act)
			}
			a.log.Info("action", "kind", act.Kind, "args", act.Args, "ok", ok, "result", result)
			if err := a.Report(store.KindActionResult, act.ID, map[string]any{"ok": ok, "result": result}); err != nil {
				a.log.Error("action result", "err", err)
			}
		}
	}
}
