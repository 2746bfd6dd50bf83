package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/killswitch-dev/killswitch/internal/hub/store"
)

// webhooks posts each new incident to the configured URL as a
// Slack-compatible message ({"text": ...}), with a few retries.
func (h *Hub) webhooks(ctx context.Context) {
	client := &http.Client{Timeout: 10 * time.Second}
	for {
		select {
		case <-ctx.Done():
			return
		case inc := <-h.hooks:
			if h.cfg.Webhook == "" {
				continue
			}
			what := "ransomware stopped"
			switch inc.Kind {
			case store.KindSinkhole:
				what = "asked for WannaCry's kill-switch domain (infected)"
			case store.KindExecBlocked:
				what = "refused to run a blocked binary"
			}
			var body struct {
				Client string `json:"client"`
			}
			if json.Unmarshal(inc.Body, &body) == nil && body.Client != "" {
				what += ", written through a file share by the client " + body.Client + " (cut off from the share; the ransomware runs there)"
			}
			msg, _ := json.Marshal(map[string]any{
				"text": fmt.Sprintf(":rotating_light: killswitch: %s on host %s (incident %s at %s)", what, inc.HostName, inc.AgentKey, inc.Opened.UTC().Format(time.RFC3339)),
				"killswitch": map[string]any{"host": inc.HostName, "host_id": inc.HostID, "incident": inc.AgentKey, "kind": inc.Kind,
					"body": json.RawMessage(inc.Body)},
			})
			result := "failed"
			for attempt := 0; attempt < 3; attempt++ {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.cfg.Webhook, bytes.NewReader(msg))
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode < 300 {
						result = "ok"
						break
					}
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Duration(attempt+1) * time.Second):
				}
			}
			h.metrics.webhooks.WithLabelValues(result).Inc()
			if result != "ok" {
				h.log.Warn("webhook failed", "url", h.cfg.Webhook, "incident", inc.AgentKey)
			}
		}
	}
}
