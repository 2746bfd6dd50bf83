package hub

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/killswitch-dev/killswitch/internal/hub/store"
)

// EnrolRequest is what an agent sends to enrol.
type EnrolRequest struct {
	Token string `json:"token"` // the secret part of the token
	Name  string `json:"name"`
	CSR   string `json:"csr"` // PEM
}

// EnrolResponse is the agent's identity.
type EnrolResponse struct {
	HostID string `json:"host_id"`
	Cert   string `json:"cert"` // PEM, signed by the hub's CA
	CA     string `json:"ca"`   // PEM
}

// ReportBatch is what an agent posts: its reports in order (possibly
// none: a heartbeat).
type ReportBatch struct {
	Version  string         `json:"version"`
	Isolated bool           `json:"isolated"`
	Reports  []store.Report `json:"reports"`
}

// ReportReply acknowledges reports (applied now or before) and hands out
// the host's queued actions.
type ReportReply struct {
	Acked   []string       `json:"acked"`
	Actions []store.Action `json:"actions"`
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			httpError(w, http.StatusRequestEntityTooLarge, "request larger than %d bytes", maxBody)
		} else {
			httpError(w, http.StatusBadRequest, "malformed request: %v", err)
		}
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		httpError(w, http.StatusBadRequest, "malformed request: trailing data")
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func (h *Hub) handleEnroll(w http.ResponseWriter, r *http.Request) {
	if !h.enrol.Allow() {
		h.metrics.rejected.WithLabelValues("rate").Inc()
		httpError(w, http.StatusTooManyRequests, "too many enrolments; retry later")
		return
	}
	var req EnrolRequest
	if !decode(w, r, &req) {
		h.metrics.rejected.WithLabelValues("malformed").Inc()
		return
	}
	req.Name = strings.TrimSpace(req.Name)
	if req.Name == "" || len(req.Name) > 253 || !utf8.ValidString(req.Name) || strings.ContainsAny(req.Name, "\x00\r\n<>") {
		httpError(w, http.StatusBadRequest, "name: 1 to 253 printable characters")
		return
	}
	hostID := store.NewID()
	now := time.Now()
	// Check the request before spending the token on it.
	certPEM, serial, err := h.CA.SignAgent([]byte(req.CSR), hostID)
	if err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if err := h.Store.UseToken(r.Context(), hashSecret(req.Token), hostID, now); err != nil {
		h.metrics.rejected.WithLabelValues("token").Inc()
		h.audit(r.Context(), "agent:"+clientIP(r), "enrol-refused", req.Name, "token unknown, used or expired")
		httpError(w, http.StatusForbidden, "enrolment token unknown, already used or expired")
		return
	}
	if err := h.Store.AddHost(r.Context(), store.Host{ID: hostID, Name: req.Name, Enrolled: now, CertSerial: serial, Addr: r.RemoteAddr}); err != nil {
		httpError(w, http.StatusInternalServerError, "store: %v", err)
		return
	}
	h.audit(r.Context(), "agent:"+clientIP(r), "enrol", hostID, req.Name)
	h.queueBlocklist(r.Context(), hostID)
	h.log.Info("enrolled", "host", req.Name, "id", hostID)
	writeJSON(w, EnrolResponse{HostID: hostID, Cert: string(certPEM), CA: string(h.CA.PEM)})
}

// agent admits a request only with a valid client certificate of a known,
// unrevoked host, within the host's rate limit.
func (h *Hub) agent(next func(http.ResponseWriter, *http.Request, store.Host)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			h.metrics.rejected.WithLabelValues("no-cert").Inc()
			httpError(w, http.StatusUnauthorized, "a client certificate from this hub is required (enrol first)")
			return
		}
		leaf := r.TLS.VerifiedChains[0][0]
		host, err := h.agentHost(r.Context(), leaf.Subject.CommonName)
		if err != nil || host.CertSerial != leaf.SerialNumber.Text(16) {
			h.metrics.rejected.WithLabelValues("unknown-host").Inc()
			httpError(w, http.StatusForbidden, "unknown host")
			return
		}
		if host.Revoked {
			h.metrics.rejected.WithLabelValues("revoked").Inc()
			httpError(w, http.StatusForbidden, "this host has been revoked")
			return
		}
		if !h.limiter(h.perHost, host.ID, agentRate, agentBurst).Allow() {
			h.metrics.rejected.WithLabelValues("rate").Inc()
			w.Header().Set("Retry-After", "1")
			httpError(w, http.StatusTooManyRequests, "slow down")
			return
		}
		next(w, r, host)
	}
}

var validKinds = map[string]bool{store.KindIncident: true, store.KindScan: true, store.KindSinkhole: true, store.KindActionResult: true, store.KindExecBlocked: true}

func (h *Hub) handleReports(w http.ResponseWriter, r *http.Request, host store.Host) {
	start := time.Now()
	var batch ReportBatch
	if !decode(w, r, &batch) {
		h.metrics.rejected.WithLabelValues("malformed").Inc()
		return
	}
	if len(batch.Reports) > maxReports {
		httpError(w, http.StatusRequestEntityTooLarge, "at most %d reports per request", maxReports)
		return
	}
	// Validate the whole batch first: a bad report changes nothing.
	for i, rep := range batch.Reports {
		switch {
		case rep.ID == "" || len(rep.ID) > 64 || len(rep.Key) > 512:
			httpError(w, http.StatusBadRequest, "report %d: id of 1 to 64 bytes and key up to 512 needed", i)
			return
		case !validKinds[rep.Kind]:
			httpError(w, http.StatusBadRequest, "report %d: unknown kind %q", i, rep.Kind)
			return
		case !json.Valid(rep.Body):
			httpError(w, http.StatusBadRequest, "report %d: body is not JSON", i)
			return
		}
	}
	ctx := r.Context()
	now := time.Now()
	h.noteSeen(store.Heartbeat{HostID: host.ID, Addr: r.RemoteAddr, Version: cut(batch.Version, 64), Isolated: batch.Isolated, Time: now})
	reply := ReportReply{Acked: []string{}, Actions: []store.Action{}}
	for _, rep := range batch.Reports {
		target := host
		if rep.Kind == store.KindSinkhole {
			target = h.askingHost(ctx, host, rep)
		}
		outcome, err := h.Store.Ingest(ctx, target.ID, rep, now)
		if err != nil {
			// Stop here: later reports wait so that order is kept.
			h.log.Error("ingest", "host", host.Name, "report", rep.ID, "err", err)
			break
		}
		reply.Acked = append(reply.Acked, rep.ID)
		h.metrics.reports.WithLabelValues(rep.Kind).Inc()
		if outcome == store.NewIncident {
			h.newIncident(ctx, target, rep)
		}
	}
	if h.hasPending(host.ID) {
		if actions, err := h.Store.TakeActions(ctx, host.ID, now); err == nil && actions != nil {
			reply.Actions = actions
		}
	}
	writeJSON(w, reply)
	h.metrics.ingest.Observe(time.Since(start).Seconds())
}

func (h *Hub) newIncident(ctx context.Context, host store.Host, rep store.Report) {
	h.metrics.incidents.WithLabelValues(rep.Kind).Inc()
	h.audit(ctx, "agent:"+host.Name, "incident", host.ID, rep.Key)
	inc := store.Incident{HostID: host.ID, HostName: host.Name, AgentKey: rep.Key, Kind: rep.Kind, Opened: rep.Time, Body: rep.Body}
	select {
	case h.hooks <- inc:
	default:
		h.log.Warn("webhook queue full; incident not announced", "host", host.Name, "incident", rep.Key)
	}
}

// askingHost is the host a sinkhole hit is about: the enrolled host that
// last connected from the address that asked, or else a host record for
// that address, marked as not enrolled (an infected machine with no agent
// is exactly what the console must show).
func (h *Hub) askingHost(ctx context.Context, sinkhole store.Host, rep store.Report) store.Host {
	var body struct {
		Source struct {
			IP string `json:"ip"`
		} `json:"source"`
	}
	if json.Unmarshal(rep.Body, &body) != nil {
		return sinkhole
	}
	ip, err := netip.ParseAddr(body.Source.IP)
	if err != nil {
		return sinkhole
	}
	hosts, err := h.Store.Hosts(ctx)
	if err != nil {
		return sinkhole
	}
	// Of the enrolled hosts last seen at that address, the most recent one
	// other than the sinkhole's own host.
	var best *store.Host
	for i, c := range hosts {
		ap, err := netip.ParseAddrPort(c.Addr)
		if err != nil || ap.Addr().Unmap() != ip.Unmap() || c.CertSerial == "-" || c.ID == sinkhole.ID {
			continue
		}
		if best == nil || c.LastSeen.After(best.LastSeen) {
			best = &hosts[i]
		}
	}
	if best != nil {
		return *best
	}
	id := "unenrolled-" + ip.String()
	if c, err := h.Store.Host(ctx, id); err == nil {
		return c
	}
	c := store.Host{ID: id, Name: ip.String() + " (not enrolled)", Enrolled: time.Now(), CertSerial: "-", Addr: netip.AddrPortFrom(ip, 0).String()}
	if err := h.Store.AddHost(ctx, c); err != nil {
		return sinkhole
	}
	h.audit(ctx, "agent:"+sinkhole.Name, "unenrolled-host-seen", id, "asked for a kill-switch domain")
	return c
}

func cut(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
