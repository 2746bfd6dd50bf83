package agent_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/killswitch-dev/killswitch/internal/agent"
	"github.com/killswitch-dev/killswitch/internal/hub"
	"github.com/killswitch-dev/killswitch/internal/hub/store"
	"github.com/killswitch-dev/killswitch/internal/testenv"
)

// TestBlockHashFleetWide: an operator blocks a binary's hash for the whole
// fleet from the console API; a real `killswitch guard --hub` picks the
// action up and its blocker process refuses the binary under any name;
// the refusal comes back as an incident; a host enrolled afterwards is
// given the block too; unblocking lets the binary run again.
// Executions are watched on a tmpfs of the test's own only.
func TestBlockHashFleetWide(t *testing.T) {
	testenv.RequireRoot(t)
	exe := testenv.BuildKillswitch(t)
	ctx := context.Background()
	dir := t.TempDir()
	bins := filepath.Join(dir, "bins")
	os.Mkdir(bins, 0o755)
	if err := unix.Mount("tmpfs", bins, "tmpfs", 0, "size=64m"); err != nil {
		testenv.Skip(t, "cannot mount a tmpfs: "+err.Error())
	}
	defer unix.Unmount(bins, unix.MNT_DETACH)
	sample, _ := os.ReadFile("/bin/true")
	sample = append(sample, "WanaCrypt0r"...)
	evil := filepath.Join(bins, "tasksche.exe")
	os.WriteFile(evil, sample, 0o755)
	sum := sha256.Sum256(sample)
	sha := hex.EncodeToString(sum[:])

	h, err := hub.Open(ctx, hub.Config{Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, "hub"), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Start()()
	h.AddUser(ctx, "rita", "responder password 1", hub.RoleResponder)
	tok, _ := h.NewToken(ctx, time.Hour)

	protected := filepath.Join(dir, "protected")
	os.Mkdir(protected, 0o755)
	blocklist := filepath.Join(dir, "blocklist.json")
	guard := exec.Command(exe, "guard", "--hub", h.URL(), "--token", tok, "--hub-interval", "200ms",
		"--agent-state", filepath.Join(dir, "agent"), "--vault", filepath.Join(dir, "vault"), "--alerts", filepath.Join(dir, "alerts.jsonl"),
		"--blocklist", blocklist, "--exec-mounts", bins, protected)
	var guardLog bytes.Buffer
	guard.Stderr = &guardLog
	if err := guard.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		guard.Process.Signal(syscall.SIGTERM)
		guard.Wait()
		if t.Failed() {
			t.Logf("guard log:\n%s", guardLog.String())
		}
	}()
	testenv.WaitFor(t, "the guard's host to enrol", func() bool { hosts, _ := h.Store.Hosts(ctx); return len(hosts) == 1 })

	if err := exec.Command(evil).Run(); err != nil {
		t.Fatalf("the sample does not run before the block: %v", err)
	}
	rita := signIn(t, h.URL(), "rita", "responder password 1")
	rita.post(t, "/api/actions", map[string]string{"host_id": "*", "kind": "block-hash", "args": sha, "note": "WannaCry sample"})
	done := waitAction(t, h, "block-hash", sha)
	if done.State != store.ActionDone || !strings.Contains(done.Result, "blocked") {
		t.Fatalf("block-hash action: %s %q", done.State, done.Result)
	}
	t.Logf("agent says: %s", done.Result)

	// Refused under its own name and under another.
	renamed := filepath.Join(bins, "svchost")
	os.WriteFile(renamed, sample, 0o755)
	for _, p := range []string{evil, renamed} {
		if err := exec.Command(p).Run(); !errors.Is(err, syscall.EPERM) && !errors.Is(err, syscall.EACCES) {
			t.Fatalf("%s ran after the block: %v", p, err)
		}
	}
	out, err := exec.Command(exe, "execblock", "list", "--state", blocklist, "--json").Output()
	if err != nil || !strings.Contains(string(out), sha) {
		t.Errorf("execblock list: %v %s", err, out)
	}

	// The refusals are an incident at the hub.
	var inc store.Incident
	testenv.WaitFor(t, "an exec-blocked incident", func() bool {
		incs, _ := h.Store.Incidents(ctx, 10)
		for _, i := range incs {
			if i.Kind == store.KindExecBlocked {
				inc = i
				return true
			}
		}
		return false
	})
	var body struct {
		SHA256 string `json:"sha256"`
		Count  int    `json:"count"`
		Actor  struct {
			Executable string `json:"executable"`
		} `json:"actor"`
	}
	json.Unmarshal(inc.Body, &body)
	// The incident is updated as refusals go on (at most once a second):
	// it may already show the second one.
	if body.SHA256 != sha || body.Count < 1 || (body.Actor.Executable != evil && body.Actor.Executable != renamed) {
		t.Errorf("exec-blocked incident body: %s", inc.Body)
	}

	// A host enrolled now is given the fleet's blocklist.
	tok2, _ := h.NewToken(ctx, time.Hour)
	later, err := agent.Open(ctx, agent.Config{StateDir: filepath.Join(dir, "later"), Hub: h.URL(), Token: tok2, Name: "later"})
	if err != nil {
		t.Fatal(err)
	}
	later.Close()
	acts, _ := h.Store.Actions(ctx, 100)
	given := false
	for _, a := range acts {
		given = given || (a.HostID == later.HostID() && a.Kind == "block-hash" && a.Args == sha)
	}
	if !given {
		t.Error("a host enrolled after the block was not given it")
	}

	rita.post(t, "/api/actions", map[string]string{"host_id": "*", "kind": "unblock-hash", "args": sha})
	if a := waitAction(t, h, "unblock-hash", sha); a.State != store.ActionDone {
		t.Fatalf("unblock-hash action: %s %q", a.State, a.Result)
	}
	if err := exec.Command(evil).Run(); err != nil {
		t.Fatalf("still refused after unblock: %v", err)
	}
	if list, _ := h.Store.Blocklist(ctx); len(list) != 0 {
		t.Errorf("fleet blocklist after unblock: %+v", list)
	}
	audit, _ := h.Store.Audit(ctx, 100)
	seen := map[string]int{}
	for _, e := range audit {
		if e.Actor == "rita" {
			seen[e.Action]++
		}
	}
	if seen["block-hash-fleet"] != 1 || seen["unblock-hash-fleet"] != 1 {
		t.Errorf("rita's fleet actions in the audit log: %v", seen)
	}
}

type consoleClient struct {
	base string
	c    *http.Client
}

func signIn(t *testing.T, base, user, password string) *consoleClient {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &consoleClient{base, &http.Client{Jar: jar, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}}
	t.Cleanup(c.c.CloseIdleConnections)
	c.post(t, "/api/login", map[string]string{"user": user, "password": password})
	return c
}

func (c *consoleClient) post(t *testing.T, path string, body any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", c.base+path, bytes.NewReader(b))
	req.Header.Set("X-Killswitch", "1")
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("POST %s: %s", path, resp.Status)
	}
}

// waitAction waits until the guard's host has finished the action.
func waitAction(t *testing.T, h *hub.Hub, kind, args string) store.Action {
	t.Helper()
	var got store.Action
	testenv.WaitFor(t, kind+" to finish", func() bool {
		acts, _ := h.Store.Actions(context.Background(), 100)
		for _, a := range acts {
			if a.Kind == kind && a.Args == args && (a.State == store.ActionDone || a.State == store.ActionFailed) {
				got = a
				return true
			}
		}
		return false
	})
	return got
}
