package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"
	_ "modernc.org/sqlite"             // registers "sqlite"
)

// db implements Store over database/sql for both dialects. Times are
// stored as Unix nanoseconds and JSON as text, so one set of queries
// serves both; only placeholders and the schema preamble differ.
type db struct {
	sql      *sql.DB
	postgres bool
}

// Open opens (and creates or migrates) a store: a PostgreSQL URL
// (postgres://...) or a SQLite file path.
func Open(ctx context.Context, dsn string) (Store, error) {
	d := &db{}
	var err error
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		d.postgres = true
		d.sql, err = sql.Open("pgx", dsn)
		if err == nil {
			// Keep the connections open: database/sql keeps 2 idle by
			// default, and each new PostgreSQL connection is a forked
			// backend; the churn under bursts was the hub's p99.
			d.sql.SetMaxOpenConns(32)
			d.sql.SetMaxIdleConns(32)
			d.sql.SetConnMaxIdleTime(5 * time.Minute)
		}
	} else {
		d.sql, err = sql.Open("sqlite", "file:"+dsn+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(ON)&_txlock=immediate")
		if err == nil {
			// SQLite has one writer; one connection queues writers in Go
			// instead of in SQLite's busy handler, whose sleeps made the
			// p99 latency jump from milliseconds to seconds under load.
			d.sql.SetMaxOpenConns(1)
		}
	}
	if err != nil {
		return nil, err
	}
	if err := d.sql.PingContext(ctx); err != nil {
		d.sql.Close()
		return nil, fmt.Errorf("store: %w", err)
	}
	if err := d.migrate(ctx); err != nil {
		d.sql.Close()
		return nil, err
	}
	return d, nil
}

const schema = `
CREATE TABLE IF NOT EXISTS tokens (hash TEXT PRIMARY KEY, created BIGINT NOT NULL, expires BIGINT NOT NULL, used BIGINT NOT NULL DEFAULT 0, host_id TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS hosts (id TEXT PRIMARY KEY, name TEXT NOT NULL, enrolled BIGINT NOT NULL, last_seen BIGINT NOT NULL DEFAULT 0,
  revoked INTEGER NOT NULL DEFAULT 0, cert_serial TEXT NOT NULL, isolated INTEGER NOT NULL DEFAULT 0, version TEXT NOT NULL DEFAULT '', addr TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS reports (host_id TEXT NOT NULL, report_id TEXT NOT NULL, seq BIGINT NOT NULL, kind TEXT NOT NULL, received BIGINT NOT NULL, PRIMARY KEY (host_id, report_id));
CREATE TABLE IF NOT EXISTS incidents (id TEXT PRIMARY KEY, host_id TEXT NOT NULL, agent_key TEXT NOT NULL, kind TEXT NOT NULL, opened BIGINT NOT NULL, updated BIGINT NOT NULL, body TEXT NOT NULL, UNIQUE (host_id, agent_key));
CREATE INDEX IF NOT EXISTS incidents_opened ON incidents (opened);
CREATE TABLE IF NOT EXISTS scans (host_id TEXT NOT NULL, key TEXT NOT NULL, scanned BIGINT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (host_id, key));
CREATE TABLE IF NOT EXISTS actions (id TEXT PRIMARY KEY, host_id TEXT NOT NULL, kind TEXT NOT NULL, args TEXT NOT NULL, state TEXT NOT NULL, created_by TEXT NOT NULL,
  created BIGINT NOT NULL, picked BIGINT NOT NULL DEFAULT 0, done BIGINT NOT NULL DEFAULT 0, result TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS actions_host_state ON actions (host_id, state, created);
CREATE TABLE IF NOT EXISTS audit (id TEXT PRIMARY KEY, at BIGINT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, detail TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, hash TEXT NOT NULL, role TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (hash TEXT PRIMARY KEY, username TEXT NOT NULL, expires BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS blocklist (sha256 TEXT PRIMARY KEY, note TEXT NOT NULL, created_by TEXT NOT NULL, created BIGINT NOT NULL);
`

func (d *db) migrate(ctx context.Context) error {
	if d.postgres {
		// Several hubs may start at once against one database.
		if _, err := d.sql.ExecContext(ctx, `SELECT pg_advisory_lock(4242)`); err != nil {
			return err
		}
		defer d.sql.ExecContext(ctx, `SELECT pg_advisory_unlock(4242)`)
	}
	for _, stmt := range strings.Split(schema, ";\n") {
		if strings.TrimSpace(stmt) == "" {
			continue
		}
		if _, err := d.sql.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("store: schema: %w", err)
		}
	}
	return nil
}

// q rewrites ? placeholders as $1, $2 ... for PostgreSQL.
func (d *db) q(query string) string {
	if !d.postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, c := range query {
		if c == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

func (d *db) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return d.sql.ExecContext(ctx, d.q(query), args...)
}

func ns(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNS(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// NewID returns a random 128-bit identifier in hex.
func NewID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (d *db) Close() error { return d.sql.Close() }

func (d *db) CreateToken(ctx context.Context, hash string, expires time.Time) error {
	_, err := d.exec(ctx, `INSERT INTO tokens (hash, created, expires) VALUES (?, ?, ?)`, hash, time.Now().UnixNano(), ns(expires))
	return err
}

func (d *db) UseToken(ctx context.Context, hash, hostID string, now time.Time) error {
	res, err := d.exec(ctx, `UPDATE tokens SET used = ?, host_id = ? WHERE hash = ? AND used = 0 AND expires > ?`, ns(now), hostID, hash, ns(now))
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return ErrTokenInvalid
	}
	return nil
}

func (d *db) AddHost(ctx context.Context, h Host) error {
	_, err := d.exec(ctx, `INSERT INTO hosts (id, name, enrolled, last_seen, cert_serial, version, addr) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		h.ID, h.Name, ns(h.Enrolled), ns(h.LastSeen), h.CertSerial, h.Version, h.Addr)
	return err
}

const hostCols = `id, name, enrolled, last_seen, revoked, cert_serial, isolated, version, addr`

func scanHost(row interface{ Scan(...any) error }) (Host, error) {
	var h Host
	var enrolled, seen int64
	var revoked, isolated int
	err := row.Scan(&h.ID, &h.Name, &enrolled, &seen, &revoked, &h.CertSerial, &isolated, &h.Version, &h.Addr)
	if errors.Is(err, sql.ErrNoRows) {
		return h, ErrNotFound
	}
	h.Enrolled, h.LastSeen, h.Revoked, h.Isolated = fromNS(enrolled), fromNS(seen), revoked != 0, isolated != 0
	return h, err
}

func (d *db) Host(ctx context.Context, id string) (Host, error) {
	return scanHost(d.sql.QueryRowContext(ctx, d.q(`SELECT `+hostCols+` FROM hosts WHERE id = ?`), id))
}

func (d *db) Hosts(ctx context.Context) ([]Host, error) {
	rows, err := d.sql.QueryContext(ctx, `SELECT `+hostCols+` FROM hosts ORDER BY name, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Host
	for rows.Next() {
		h, err := scanHost(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, rows.Err()
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (d *db) SetRevoked(ctx context.Context, id string, revoked bool) error {
	res, err := d.exec(ctx, `UPDATE hosts SET revoked = ? WHERE id = ?`, b2i(revoked), id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

func (d *db) SeenMany(ctx context.Context, beats []Heartbeat) error {
	// One statement per chunk: hundreds of single-row updates a second
	// were a CPU burst on the database that showed in the hub's p99.
	const chunk = 500
	for len(beats) > 0 {
		n := min(len(beats), chunk)
		var q strings.Builder
		// VALUES columns are column1..column5 in both SQLite and PostgreSQL.
		q.WriteString(`UPDATE hosts SET last_seen = v.column2, addr = v.column3, version = v.column4, isolated = v.column5 FROM (VALUES `)
		args := make([]any, 0, 5*n)
		for i, b := range beats[:n] {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString(`(CAST(? AS TEXT), CAST(? AS BIGINT), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS INTEGER))`)
			args = append(args, b.HostID, ns(b.Time), b.Addr, b.Version, b2i(b.Isolated))
		}
		q.WriteString(`) AS v WHERE hosts.id = v.column1`)
		if _, err := d.exec(ctx, q.String(), args...); err != nil {
			return err
		}
		beats = beats[n:]
	}
	return nil
}

func (d *db) Ingest(ctx context.Context, hostID string, r Report, now time.Time) (Outcome, error) {
	tx, err := d.sql.BeginTx(ctx, nil)
	if err != nil {
		return Duplicate, err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, d.q(`INSERT INTO reports (host_id, report_id, seq, kind, received) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`),
		hostID, r.ID, r.Seq, r.Kind, ns(now))
	if err != nil {
		return Duplicate, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return Duplicate, nil // delivered before: exactly once
	}
	body := string(r.Body)
	outcome := Applied
	switch r.Kind {
	case KindIncident, KindSinkhole, KindExecBlocked:
		res, err = tx.ExecContext(ctx, d.q(`INSERT INTO incidents (id, host_id, agent_key, kind, opened, updated, body) VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (host_id, agent_key) DO NOTHING`), NewID(), hostID, r.Key, r.Kind, ns(r.Time), ns(r.Time), body)
		if err != nil {
			break
		}
		if n, _ := res.RowsAffected(); n == 1 {
			outcome = NewIncident
			break
		}
		_, err = tx.ExecContext(ctx, d.q(`UPDATE incidents SET body = ?, updated = ? WHERE host_id = ? AND agent_key = ?`), body, ns(r.Time), hostID, r.Key)
	case KindScan:
		_, err = tx.ExecContext(ctx, d.q(`INSERT INTO scans (host_id, key, scanned, body) VALUES (?, ?, ?, ?)
			ON CONFLICT (host_id, key) DO UPDATE SET body = excluded.body, scanned = excluded.scanned`), hostID, r.Key, ns(r.Time), body)
	case KindActionResult:
		var res struct {
			OK     bool   `json:"ok"`
			Result string `json:"result"`
		}
		if err := json.Unmarshal(r.Body, &res); err != nil {
			return Duplicate, fmt.Errorf("store: action result: %w", err)
		}
		state := ActionDone
		if !res.OK {
			state = ActionFailed
		}
		_, err = tx.ExecContext(ctx, d.q(`UPDATE actions SET state = ?, done = ?, result = ? WHERE id = ? AND host_id = ?`),
			state, ns(r.Time), res.Result, r.Key, hostID)
	default:
		return Duplicate, fmt.Errorf("store: unknown report kind %q", r.Kind)
	}
	if err != nil {
		return Duplicate, err
	}
	return outcome, tx.Commit()
}

func (d *db) Incidents(ctx context.Context, limit int) ([]Incident, error) {
	rows, err := d.sql.QueryContext(ctx, d.q(`SELECT i.id, i.host_id, h.name, i.agent_key, i.kind, i.opened, i.updated, i.body
		FROM incidents i JOIN hosts h ON h.id = i.host_id ORDER BY i.opened DESC, i.id LIMIT ?`), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Incident
	for rows.Next() {
		inc, err := scanIncident(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, inc)
	}
	return out, rows.Err()
}

func scanIncident(row interface{ Scan(...any) error }) (Incident, error) {
	var inc Incident
	var opened, updated int64
	var body string
	err := row.Scan(&inc.ID, &inc.HostID, &inc.HostName, &inc.AgentKey, &inc.Kind, &opened, &updated, &body)
	if errors.Is(err, sql.ErrNoRows) {
		return inc, ErrNotFound
	}
	inc.Opened, inc.Updated, inc.Body = fromNS(opened), fromNS(updated), []byte(body)
	return inc, err
}

func (d *db) Incident(ctx context.Context, id string) (Incident, error) {
	return scanIncident(d.sql.QueryRowContext(ctx, d.q(`SELECT i.id, i.host_id, h.name, i.agent_key, i.kind, i.opened, i.updated, i.body
		FROM incidents i JOIN hosts h ON h.id = i.host_id WHERE i.id = ?`), id))
}

func (d *db) ScanResults(ctx context.Context) ([]ScanResult, error) {
	rows, err := d.sql.QueryContext(ctx, `SELECT host_id, key, scanned, body FROM scans ORDER BY key, host_id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ScanResult
	for rows.Next() {
		var s ScanResult
		var t int64
		var body string
		if err := rows.Scan(&s.HostID, &s.Key, &t, &body); err != nil {
			return nil, err
		}
		s.Scanned, s.Body = fromNS(t), []byte(body)
		out = append(out, s)
	}
	return out, rows.Err()
}

func (d *db) QueueAction(ctx context.Context, a Action) error {
	return d.QueueActions(ctx, []Action{a})
}

func (d *db) QueueActions(ctx context.Context, as []Action) error {
	tx, err := d.sql.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	st, err := tx.PrepareContext(ctx, d.q(`INSERT INTO actions (id, host_id, kind, args, state, created_by, created) VALUES (?, ?, ?, ?, ?, ?, ?)`))
	if err != nil {
		return err
	}
	defer st.Close()
	for _, a := range as {
		if _, err := st.ExecContext(ctx, a.ID, a.HostID, a.Kind, a.Args, ActionQueued, a.CreatedBy, ns(a.Created)); err != nil {
			return err
		}
	}
	return tx.Commit()
}

const actionCols = `id, host_id, kind, args, state, created_by, created, picked, done, result`

func scanAction(row interface{ Scan(...any) error }) (Action, error) {
	var a Action
	var c, p, dn int64
	err := row.Scan(&a.ID, &a.HostID, &a.Kind, &a.Args, &a.State, &a.CreatedBy, &c, &p, &dn, &a.Result)
	a.Created, a.Picked, a.Done = fromNS(c), fromNS(p), fromNS(dn)
	return a, err
}

func (d *db) TakeActions(ctx context.Context, hostID string, now time.Time) ([]Action, error) {
	// The hub's list of hosts with actions may be a moment stale: answer
	// "nothing" with a read rather than a write transaction.
	var queued int
	if err := d.sql.QueryRowContext(ctx, d.q(`SELECT count(*) FROM actions WHERE host_id = ? AND state = ?`), hostID, ActionQueued).Scan(&queued); err != nil || queued == 0 {
		return nil, err
	}
	tx, err := d.sql.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	lock := ""
	if d.postgres {
		lock = " FOR UPDATE SKIP LOCKED" // two hubs never hand out one action twice
	}
	rows, err := tx.QueryContext(ctx, d.q(`SELECT `+actionCols+` FROM actions WHERE host_id = ? AND state = ? ORDER BY created, id`+lock), hostID, ActionQueued)
	if err != nil {
		return nil, err
	}
	var out []Action
	for rows.Next() {
		a, err := scanAction(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, a)
	}
	rows.Close()
	for i := range out {
		if _, err := tx.ExecContext(ctx, d.q(`UPDATE actions SET state = ?, picked = ? WHERE id = ?`), ActionRunning, ns(now), out[i].ID); err != nil {
			return nil, err
		}
		out[i].State, out[i].Picked = ActionRunning, now
	}
	return out, tx.Commit()
}

func (d *db) Actions(ctx context.Context, limit int) ([]Action, error) {
	rows, err := d.sql.QueryContext(ctx, d.q(`SELECT `+actionCols+` FROM actions ORDER BY created DESC, id LIMIT ?`), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Action
	for rows.Next() {
		a, err := scanAction(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

func (d *db) QueuedHosts(ctx context.Context) ([]string, error) {
	rows, err := d.sql.QueryContext(ctx, d.q(`SELECT DISTINCT host_id FROM actions WHERE state = ?`), ActionQueued)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

func (d *db) AddAudit(ctx context.Context, e AuditEntry) error {
	_, err := d.exec(ctx, `INSERT INTO audit (id, at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?, ?)`,
		NewID(), ns(e.Time), e.Actor, e.Action, e.Target, e.Detail)
	return err
}

func (d *db) Audit(ctx context.Context, limit int) ([]AuditEntry, error) {
	rows, err := d.sql.QueryContext(ctx, d.q(`SELECT at, actor, action, target, detail FROM audit ORDER BY at DESC, id LIMIT ?`), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		var e AuditEntry
		var at int64
		if err := rows.Scan(&at, &e.Actor, &e.Action, &e.Target, &e.Detail); err != nil {
			return nil, err
		}
		e.Time = fromNS(at)
		out = append(out, e)
	}
	return out, rows.Err()
}

func (d *db) AddBlock(ctx context.Context, b Block) (bool, error) {
	res, err := d.exec(ctx, `INSERT INTO blocklist (sha256, note, created_by, created) VALUES (?, ?, ?, ?) ON CONFLICT (sha256) DO NOTHING`,
		b.SHA256, b.Note, b.CreatedBy, ns(b.Created))
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

func (d *db) RemoveBlock(ctx context.Context, sha256 string) (bool, error) {
	res, err := d.exec(ctx, `DELETE FROM blocklist WHERE sha256 = ?`, sha256)
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

func (d *db) Blocklist(ctx context.Context) ([]Block, error) {
	rows, err := d.sql.QueryContext(ctx, `SELECT sha256, note, created_by, created FROM blocklist ORDER BY created, sha256`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Block
	for rows.Next() {
		var b Block
		var c int64
		if err := rows.Scan(&b.SHA256, &b.Note, &b.CreatedBy, &c); err != nil {
			return nil, err
		}
		b.Created = fromNS(c)
		out = append(out, b)
	}
	return out, rows.Err()
}

func (d *db) PutUser(ctx context.Context, u User) error {
	_, err := d.exec(ctx, `INSERT INTO users (name, hash, role) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET hash = excluded.hash, role = excluded.role`,
		u.Name, u.Hash, u.Role)
	return err
}

func (d *db) User(ctx context.Context, name string) (User, error) {
	var u User
	err := d.sql.QueryRowContext(ctx, d.q(`SELECT name, hash, role FROM users WHERE name = ?`), name).Scan(&u.Name, &u.Hash, &u.Role)
	if errors.Is(err, sql.ErrNoRows) {
		return u, ErrNotFound
	}
	return u, err
}

func (d *db) CreateSession(ctx context.Context, hash, user string, expires time.Time) error {
	_, err := d.exec(ctx, `INSERT INTO sessions (hash, username, expires) VALUES (?, ?, ?)`, hash, user, ns(expires))
	return err
}

func (d *db) Session(ctx context.Context, hash string, now time.Time) (User, error) {
	var name string
	err := d.sql.QueryRowContext(ctx, d.q(`SELECT username FROM sessions WHERE hash = ? AND expires > ?`), hash, ns(now)).Scan(&name)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, ErrNotFound
	}
	if err != nil {
		return User{}, err
	}
	return d.User(ctx, name)
}

func (d *db) DeleteSession(ctx context.Context, hash string) error {
	_, err := d.exec(ctx, `DELETE FROM sessions WHERE hash = ?`, hash)
	return err
}
