package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Errors callers tell apart.
var (
	ErrNotFound     = errors.New("store: not found")
	ErrTokenInvalid = errors.New("store: enrolment token unknown, used or expired")
	ErrExists       = errors.New("store: already exists")
)

// Host is an enrolled agent.
type Host struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	Enrolled   time.Time `json:"enrolled"`
	LastSeen   time.Time `json:"last_seen"`
	Revoked    bool      `json:"revoked"`
	CertSerial string    `json:"cert_serial"`
	Isolated   bool      `json:"isolated"`
	Version    string    `json:"version"`
	Addr       string    `json:"addr"` // where it last connected from
}

// Heartbeat is what one heartbeat says about its host.
type Heartbeat struct {
	HostID, Addr, Version string
	Isolated              bool
	Time                  time.Time
}

// Report kinds an agent sends.
const (
	KindHeartbeat    = "heartbeat"
	KindIncident     = "incident"
	KindScan         = "scan"
	KindSinkhole     = "sinkhole"
	KindActionResult = "action-result"
	// KindExecBlocked: a blocked binary tried to run (an incident of its own).
	KindExecBlocked = "exec-blocked"
)

// Report is one message from an agent. ID is unique per host (the agent
// makes it); Seq orders one host's reports.
type Report struct {
	ID   string `json:"id"`
	Seq  int64  `json:"seq"`
	Kind string `json:"kind"`
	// Time is when the agent made the report.
	Time time.Time `json:"time"`
	// Key names what the report is about, so a later report replaces an
	// earlier one: the agent's incident id, the scanned ip:port.
	Key  string          `json:"key,omitempty"`
	Body json.RawMessage `json:"body"`
}

// Outcome says what Ingest did.
type Outcome int

const (
	Duplicate   Outcome = iota // seen before: nothing changed
	Applied                    // applied
	NewIncident                // applied, and it opened an incident the hub had not seen
)

// Incident is an incident as the hub holds it.
type Incident struct {
	ID       string          `json:"id"`
	HostID   string          `json:"host_id"`
	HostName string          `json:"host_name"`
	AgentKey string          `json:"agent_key"` // the id restore --incident takes on the host
	Kind     string          `json:"kind"`      // incident (guard) or sinkhole
	Opened   time.Time       `json:"opened"`
	Updated  time.Time       `json:"updated"`
	Body     json.RawMessage `json:"body"`
}

// ScanResult is the latest scan of one address and port by one host.
type ScanResult struct {
	HostID  string          `json:"host_id"`
	Key     string          `json:"key"`
	Scanned time.Time       `json:"scanned"`
	Body    json.RawMessage `json:"body"`
}

// Action states.
const (
	ActionQueued  = "queued"
	ActionRunning = "running"
	ActionDone    = "done"
	ActionFailed  = "failed"
)

// Action is an operator's request for a host to do something.
type Action struct {
	ID        string    `json:"id"`
	HostID    string    `json:"host_id"`
	Kind      string    `json:"kind"` // restore, isolate, release, block-hash
	Args      string    `json:"args"` // kind-specific: incident id, sha256 ...
	State     string    `json:"state"`
	CreatedBy string    `json:"created_by"`
	Created   time.Time `json:"created"`
	Picked    time.Time `json:"picked"`
	Done      time.Time `json:"done"`
	Result    string    `json:"result"`
}

// AuditEntry is one line of the audit log.
type AuditEntry struct {
	Time   time.Time `json:"time"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Target string    `json:"target"`
	Detail string    `json:"detail"`
}

// Block is a binary blocked on every host, by SHA-256 of its contents.
type Block struct {
	SHA256    string    `json:"sha256"`
	Note      string    `json:"note"`
	CreatedBy string    `json:"created_by"`
	Created   time.Time `json:"created"`
}

// User is an operator account.
type User struct {
	Name string `json:"name"`
	Hash string `json:"-"`
	Role string `json:"role"` // viewer or responder
}

// Store is what the hub needs from a database.
type Store interface {
	CreateToken(ctx context.Context, hash string, expires time.Time) error
	// UseToken consumes a one-time token for hostID, atomically.
	UseToken(ctx context.Context, hash, hostID string, now time.Time) error
	AddHost(ctx context.Context, h Host) error
	Host(ctx context.Context, id string) (Host, error)
	Hosts(ctx context.Context) ([]Host, error)
	SetRevoked(ctx context.Context, id string, revoked bool) error
	// SeenMany records heartbeats (no ledger: they are idempotent).
	SeenMany(ctx context.Context, beats []Heartbeat) error

	// Ingest applies a report exactly once: a report ID seen before from
	// the host changes nothing (Duplicate).
	Ingest(ctx context.Context, hostID string, r Report, now time.Time) (Outcome, error)
	Incidents(ctx context.Context, limit int) ([]Incident, error)
	Incident(ctx context.Context, id string) (Incident, error)
	ScanResults(ctx context.Context) ([]ScanResult, error)

	QueueAction(ctx context.Context, a Action) error
	// QueueActions queues several at once, all or none (a fleet-wide action).
	QueueActions(ctx context.Context, as []Action) error
	// TakeActions returns the host's queued actions, oldest first, and
	// marks them running.
	TakeActions(ctx context.Context, hostID string, now time.Time) ([]Action, error)
	Actions(ctx context.Context, limit int) ([]Action, error)
	// QueuedHosts lists the hosts that have actions waiting.
	QueuedHosts(ctx context.Context) ([]string, error)

	// The fleet-wide blocklist: hosts enrolled later get it too.
	// AddBlock and RemoveBlock report whether they changed anything.
	AddBlock(ctx context.Context, b Block) (bool, error)
	RemoveBlock(ctx context.Context, sha256 string) (bool, error)
	Blocklist(ctx context.Context) ([]Block, error)

	AddAudit(ctx context.Context, e AuditEntry) error
	Audit(ctx context.Context, limit int) ([]AuditEntry, error)

	PutUser(ctx context.Context, u User) error
	User(ctx context.Context, name string) (User, error)
	CreateSession(ctx context.Context, hash, user string, expires time.Time) error
	// Session returns the user of a live session.
	Session(ctx context.Context, hash string, now time.Time) (User, error)
	DeleteSession(ctx context.Context, hash string) error

	Close() error
}
