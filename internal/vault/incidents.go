package vault

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/killswitch-dev/killswitch/internal/detector"
)

// Incident states.
const (
	StateOpen     = "open"
	StateRestored = "restored"
)

// Incident is what the guard recorded about one stopped attack.
type Incident struct {
	ID         string            `json:"id"`
	Opened     time.Time         `json:"opened"`
	FrozenAt   time.Time         `json:"frozen_at"`
	State      string            `json:"state"`
	Actor      detector.Actor    `json:"actor"`
	Cmdline    []string          `json:"cmdline,omitempty"`
	Stopped    []int             `json:"stopped_pids,omitempty"`
	Score      float64           `json:"score"`
	Indicators []string          `json:"indicators"`
	Damaged    []string          `json:"damaged"`
	FirstEvent time.Time         `json:"first_event"`
	Files      []detector.Record `json:"files"`
	RestoredAt time.Time         `json:"restored_at,omitzero"`
	// ExecBlocked: further executions of the actor's binary are denied.
	ExecBlocked bool `json:"exec_blocked,omitempty"`
	// ExeSHA256 is the actor's binary as it ran: what the hub blocks.
	ExeSHA256 string `json:"exe_sha256,omitempty"`
	// Client is the remote address a file server's process was writing
	// for (the actor was smbd); ClientCutOff says it can no longer reach
	// the file-sharing ports, CutOffError why not.
	Client       string `json:"client,omitempty"`
	ClientCutOff bool   `json:"client_cut_off,omitempty"`
	CutOffError  string `json:"cut_off_error,omitempty"`
}

// SaveIncident inserts or replaces an incident.
func (v *Vault) SaveIncident(inc Incident) error {
	body, err := json.Marshal(inc)
	if err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	_, err = v.db.Exec(`INSERT INTO incidents(id, opened, state, body) VALUES(?,?,?,?)
		ON CONFLICT(id) DO UPDATE SET state=excluded.state, body=excluded.body`,
		inc.ID, inc.Opened.UnixNano(), inc.State, string(body))
	if err != nil {
		return fmt.Errorf("vault index: %w", err)
	}
	return nil
}

// Incident loads one incident.
func (v *Vault) Incident(id string) (Incident, error) {
	var body string
	err := v.db.QueryRow(`SELECT body FROM incidents WHERE id=?`, id).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		return Incident{}, fmt.Errorf("incident %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Incident{}, fmt.Errorf("vault index: %w", err)
	}
	var inc Incident
	if err := json.Unmarshal([]byte(body), &inc); err != nil {
		return Incident{}, fmt.Errorf("incident %q: %w: %w", id, ErrCorrupt, err)
	}
	return inc, nil
}

// Incidents lists incidents, newest first.
func (v *Vault) Incidents() ([]Incident, error) {
	rows, err := v.db.Query(`SELECT id FROM incidents ORDER BY opened DESC`)
	if err != nil {
		return nil, fmt.Errorf("vault index: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	var out []Incident
	for _, id := range ids {
		inc, err := v.Incident(id)
		if err != nil {
			return out, err
		}
		out = append(out, inc)
	}
	return out, nil
}
