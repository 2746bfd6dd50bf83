package hub

import (
	"cmp"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"github.com/killswitch-dev/killswitch/internal/hub/store"
)

//go:embed web
var webFiles embed.FS

// Action kinds an operator may queue.
var actionKinds = map[string]*regexp.Regexp{
	"restore":      regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`), // the host's incident id
	"isolate":      regexp.MustCompile(`^$`),
	"release":      regexp.MustCompile(`^$`),
	"block-hash":   regexp.MustCompile(`^[0-9a-f]{64}$`), // sha256 of the binary
	"unblock-hash": regexp.MustCompile(`^[0-9a-f]{64}$`),
	// a file-server client the host's guard cut off (an IP address)
	"release-client": regexp.MustCompile(`^[0-9A-Fa-f.:]{2,45}$`),
}

func (h *Hub) consoleRoutes(mux *http.ServeMux) {
	static, _ := fs.Sub(webFiles, "web")
	files := http.FileServerFS(static)
	mux.Handle("GET /", securityHeaders(files))
	mux.HandleFunc("POST /api/login", h.login)
	mux.HandleFunc("POST /api/logout", h.operator(RoleViewer, h.logout))
	mux.HandleFunc("GET /api/me", h.operator(RoleViewer, func(w http.ResponseWriter, r *http.Request, u store.User) { writeJSON(w, u) }))
	mux.HandleFunc("GET /api/hosts", h.operator(RoleViewer, h.apiHosts))
	mux.HandleFunc("GET /api/incidents", h.operator(RoleViewer, h.apiIncidents))
	mux.HandleFunc("GET /api/incidents/{id}", h.operator(RoleViewer, h.apiIncident))
	mux.HandleFunc("GET /api/scans", h.operator(RoleViewer, h.apiScans))
	mux.HandleFunc("GET /api/actions", h.operator(RoleViewer, h.apiActions))
	mux.HandleFunc("POST /api/actions", h.operator(RoleResponder, h.apiQueueAction))
	mux.HandleFunc("POST /api/hosts/{id}/revoke", h.operator(RoleResponder, h.apiRevoke))
	mux.HandleFunc("GET /api/blocklist", h.operator(RoleViewer, h.apiBlocklist))
	mux.HandleFunc("GET /api/audit", h.operator(RoleViewer, h.apiAudit))
	mux.HandleFunc("GET /api/export/alerts.jsonl", h.operator(RoleViewer, h.apiExport))
}

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}

// HostView is a host as the console shows it.
type HostView struct {
	store.Host
	Status   string            `json:"status"` // online, offline, isolated, revoked
	Exposure []json.RawMessage `json:"exposure"`
}

func (h *Hub) apiHosts(w http.ResponseWriter, r *http.Request, _ store.User) {
	hosts, err := h.Store.Hosts(r.Context())
	if err != nil {
		httpError(w, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	scans, _ := h.Store.ScanResults(r.Context())
	byIP := map[string][]json.RawMessage{}
	for _, s := range scans {
		ip, _, _ := net.SplitHostPort(s.Key)
		byIP[ip] = append(byIP[ip], json.RawMessage(s.Body))
	}
	out := []HostView{}
	for _, host := range hosts {
		v := HostView{Host: host, Status: "offline", Exposure: []json.RawMessage{}}
		switch {
		case host.Revoked:
			v.Status = "revoked"
		case host.Isolated:
			v.Status = "isolated"
		case time.Since(host.LastSeen) < onlineAfter:
			v.Status = "online"
		}
		if ip, _, err := net.SplitHostPort(host.Addr); err == nil {
			v.Exposure = append(v.Exposure, byIP[ip]...)
		}
		out = append(out, v)
	}
	writeJSON(w, out)
}

func (h *Hub) apiIncidents(w http.ResponseWriter, r *http.Request, _ store.User) {
	incs, err := h.Store.Incidents(r.Context(), 1000)
	if err != nil {
		httpError(w, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	if incs == nil {
		incs = []store.Incident{}
	}
	writeJSON(w, incs)
}

func (h *Hub) apiIncident(w http.ResponseWriter, r *http.Request, _ store.User) {
	inc, err := h.Store.Incident(r.Context(), r.PathValue("id"))
	if err != nil {
		httpError(w, http.StatusNotFound, "no such incident")
		return
	}
	writeJSON(w, inc)
}

func (h *Hub) apiScans(w http.ResponseWriter, r *http.Request, _ store.User) {
	scans, err := h.Store.ScanResults(r.Context())
	if err != nil {
		httpError(w, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	if scans == nil {
		scans = []store.ScanResult{}
	}
	writeJSON(w, scans)
}

func (h *Hub) apiActions(w http.ResponseWriter, r *http.Request, _ store.User) {
	acts, err := h.Store.Actions(r.Context(), 1000)
	if err != nil {
		httpError(w, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	if acts == nil {
		acts = []store.Action{}
	}
	writeJSON(w, acts)
}

func (h *Hub) apiQueueAction(w http.ResponseWriter, r *http.Request, u store.User) {
	var req struct {
		HostID string `json:"host_id"` // "*" with block-hash or unblock-hash: every host, now and later
		Kind   string `json:"kind"`
		Args   string `json:"args"`
		Note   string `json:"note,omitempty"` // why a binary is blocked fleet-wide
	}
	if !decode(w, r, &req) {
		return
	}
	pattern, ok := actionKinds[req.Kind]
	if ok && req.Kind == "release-client" {
		_, err := netip.ParseAddr(req.Args)
		ok = err == nil
	}
	if !ok || !pattern.MatchString(req.Args) {
		httpError(w, http.StatusBadRequest, "unknown action %q or bad arguments for it", req.Kind)
		return
	}
	if len(req.Note) > 512 || strings.ContainsFunc(req.Note, func(c rune) bool { return c < 0x20 || c == 0x7f }) {
		httpError(w, http.StatusBadRequest, "note: up to 512 printable characters")
		return
	}
	ctx := r.Context()
	var targets []string
	if req.HostID == "*" && (req.Kind == "block-hash" || req.Kind == "unblock-hash") {
		// The fleet's list first, so that a host enrolled from now on gets it.
		var err error
		if req.Kind == "block-hash" {
			_, err = h.Store.AddBlock(ctx, store.Block{SHA256: req.Args, Note: req.Note, CreatedBy: u.Name, Created: time.Now()})
		} else {
			_, err = h.Store.RemoveBlock(ctx, req.Args)
		}
		if err != nil {
			httpError(w, http.StatusServiceUnavailable, "store: %v", err)
			return
		}
		h.audit(ctx, u.Name, req.Kind+"-fleet", "*", req.Args+" "+req.Note)
		hosts, err := h.Store.Hosts(ctx)
		if err != nil {
			httpError(w, http.StatusServiceUnavailable, "store: %v", err)
			return
		}
		for _, host := range hosts {
			if !host.Revoked && host.CertSerial != "-" { // not the unenrolled hosts a sinkhole saw
				targets = append(targets, host.ID)
			}
		}
	} else {
		if _, err := h.Store.Host(ctx, req.HostID); err != nil {
			httpError(w, http.StatusNotFound, "no such host")
			return
		}
		targets = []string{req.HostID}
	}
	ids, err := h.queueActions(ctx, targets, req.Kind, []string{req.Args}, u.Name, req.HostID != "*")
	if err != nil {
		httpError(w, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	writeJSON(w, map[string]any{"queued": ids})
}

// queueActions queues kind for every host and every argument in one
// transaction. Per-host audit lines are for single-host actions; a
// fleet-wide one is audited once by its caller.
func (h *Hub) queueActions(ctx context.Context, hosts []string, kind string, args []string, by string, audit bool) ([]string, error) {
	var as []store.Action
	for _, host := range hosts {
		for _, arg := range args {
			as = append(as, store.Action{ID: store.NewID(), HostID: host, Kind: kind, Args: arg, CreatedBy: by, Created: time.Now()})
		}
	}
	if err := h.Store.QueueActions(ctx, as); err != nil {
		return nil, err
	}
	h.markPending(hosts...)
	ids := make([]string, 0, len(as))
	for _, a := range as {
		if audit {
			h.audit(ctx, by, "queue-"+kind, a.HostID, a.Args)
		}
		ids = append(ids, a.ID)
	}
	return ids, nil
}

// queueBlocklist gives a newly enrolled host the fleet's blocklist.
func (h *Hub) queueBlocklist(ctx context.Context, host string) {
	list, err := h.Store.Blocklist(ctx)
	if err == nil && len(list) > 0 {
		hashes := make([]string, len(list))
		for i, b := range list {
			hashes[i] = b.SHA256
		}
		h.audit(ctx, "hub", "queue-blocklist", host, fmt.Sprint(len(list), " blocked binaries for a new host"))
		_, err = h.queueActions(ctx, []string{host}, "block-hash", hashes, "fleet blocklist", false)
	}
	if err != nil {
		h.log.Error("blocklist for a new host", "host", host, "err", err)
	}
}

func (h *Hub) apiBlocklist(w http.ResponseWriter, r *http.Request, _ store.User) {
	list, err := h.Store.Blocklist(r.Context())
	if err != nil {
		httpError(w, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	if list == nil {
		list = []store.Block{}
	}
	writeJSON(w, list)
}

func (h *Hub) apiRevoke(w http.ResponseWriter, r *http.Request, u store.User) {
	id := r.PathValue("id")
	if err := h.Store.SetRevoked(r.Context(), id, true); err != nil {
		httpError(w, http.StatusNotFound, "no such host")
		return
	}
	h.auth.Delete(id) // refused from the next request on
	h.audit(r.Context(), u.Name, "revoke", id, "")
	w.WriteHeader(http.StatusNoContent)
}

func (h *Hub) apiAudit(w http.ResponseWriter, r *http.Request, _ store.User) {
	log, err := h.Store.Audit(r.Context(), 1000)
	if err != nil {
		httpError(w, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	if log == nil {
		log = []store.AuditEntry{}
	}
	writeJSON(w, log)
}

// apiExport writes every incident as an ECS alert, one JSON object per
// line, for a SIEM to import.
func (h *Hub) apiExport(w http.ResponseWriter, r *http.Request, u store.User) {
	incs, err := h.Store.Incidents(r.Context(), 100_000)
	if err != nil {
		httpError(w, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	h.audit(r.Context(), u.Name, "export", "", fmt.Sprint(len(incs), " incidents"))
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	for _, inc := range incs {
		action := "ransomware-stopped"
		switch inc.Kind {
		case store.KindSinkhole:
			action = "killswitch-domain-contacted"
		case store.KindExecBlocked:
			action = "blocked-binary-denied"
		}
		alert := map[string]any{
			"@timestamp": inc.Opened,
			"message":    fmt.Sprintf("%s on %s", strings.ReplaceAll(action, "-", " "), inc.HostName),
			"event":      map[string]any{"kind": "alert", "action": action, "category": []string{"malware"}, "id": inc.ID},
			"host":       map[string]any{"name": inc.HostName, "id": inc.HostID},
			"killswitch": map[string]any{"incident": inc.AgentKey, "details": json.RawMessage(inc.Body)},
		}
		// The remote machine behind it: a sinkhole's asker, a file
		// server's client.
		var who struct {
			Client string `json:"client"`
			Source struct {
				IP string `json:"ip"`
			} `json:"source"`
		}
		json.Unmarshal(inc.Body, &who)
		if ip := cmp.Or(who.Client, who.Source.IP); ip != "" {
			alert["source"] = map[string]any{"ip": ip}
		}
		enc.Encode(alert)
	}
}
