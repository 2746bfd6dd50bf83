package drill

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/killswitch-dev/killswitch/internal/agent"
	"github.com/killswitch-dev/killswitch/internal/alert"
	"github.com/killswitch-dev/killswitch/internal/execblock"
	"github.com/killswitch-dev/killswitch/internal/guard"
	hubstore "github.com/killswitch-dev/killswitch/internal/hub/store"
	"github.com/killswitch-dev/killswitch/internal/simulate"
	"github.com/killswitch-dev/killswitch/internal/vault"
)

// Options for one drill.
type Options struct {
	Profile string
	Files   int
	Exe     string // the killswitch binary (simulator and restore run as children)
	Keep    bool   // keep the temporary folder
	Log     *slog.Logger
	Alerts  io.Writer // where the guard's alerts go
	// NoDetect arms only the vault (detector threshold unreachable), to prove
	// that restore --before recovers an attack that was missed.
	NoDetect bool
	// Hub, when set, links the drill's guard to a hub as an agent.
	Hub *HubLink
	// Share attacks through a file share instead of on the host: a real
	// smbd shares the corpus, and WannaCry's pattern comes from a
	// workstation over SMB (see share.go). Profile is ignored.
	Share bool
}

// HubLink connects a drill to a hub.
type HubLink struct {
	URL, Token string
	StateDir   string // the agent's identity and outbox
	// RestoreVia replaces the drill's own restore: it must get the
	// incident restored through the hub (an action the agent runs) and
	// return once that is done.
	RestoreVia func(ctx context.Context, hostID, incident string) error
}

// Result is what happened.
type Result struct {
	Profile        string        `json:"profile"`
	Dir            string        `json:"dir"`
	Files          int           `json:"files"`
	Stopped        bool          `json:"stopped"`
	Incident       string        `json:"incident,omitempty"`
	Damaged        int           `json:"damaged_before_restore"`
	AttackerFiles  int           `json:"attacker_files_before_restore"`
	TimeToStop     time.Duration `json:"time_to_stop_ns"`
	Indicators     []string      `json:"indicators,omitempty"`
	Lost           int           `json:"lost_after_restore"`
	LeftOver       int           `json:"attacker_files_after_restore"`
	RestoreOutput  string        `json:"-"`
	Alert          string        `json:"alert,omitempty"` // the guard's alert, one ECS JSON line
	SimulatorError string        `json:"simulator_exit,omitempty"`
	Share          *ShareResult  `json:"share,omitempty"`
}

// ShareResult is what the file-server drill adds: the server must have
// cut the workstation off and kept serving the colleague.
type ShareResult struct {
	Workstation        string `json:"workstation"`
	Client             string `json:"incident_client"` // who the incident blames
	CutOff             bool   `json:"cut_off"`
	WorkstationRefused bool   `json:"workstation_refused"` // it tried again and got nothing
	ColleagueServed    bool   `json:"colleague_served"`
}

func (s *ShareResult) ok() bool {
	return s == nil || (s.Client == s.Workstation && s.CutOff && s.WorkstationRefused && s.ColleagueServed)
}

// OK reports whether the drill proved the defence: stopped and fully restored.
func (r Result) OK() bool { return r.Stopped && r.Lost == 0 && r.LeftOver == 0 && r.Share.ok() }

// Run performs one drill.
func Run(ctx context.Context, o Options) (Result, error) {
	res := Result{Profile: o.Profile}
	var lab *shareLab
	if o.Share {
		res.Profile = "wannacry-through-share"
		var err error
		if lab, err = newShareLab(); err != nil {
			return res, err
		}
		defer lab.close()
	} else if _, err := simulate.Find(o.Profile); err != nil {
		return res, err
	}
	tmp, err := os.MkdirTemp("", "killswitch-drill-")
	if err != nil {
		return res, err
	}
	res.Dir = tmp
	if !o.Keep {
		defer os.RemoveAll(tmp)
	}
	corpus, vdir := filepath.Join(tmp, "corpus"), filepath.Join(tmp, "vault")
	if o.Files == 0 {
		o.Files = 120
	}
	m, err := simulate.MakeCorpus(corpus, o.Files, 2017)
	if err != nil {
		return res, err
	}
	res.Files = len(m.Files)
	var alerts bytes.Buffer
	var aw io.Writer = &alerts
	if o.Alerts != nil {
		aw = io.MultiWriter(&alerts, o.Alerts)
	}
	ready := make(chan struct{})
	incidents := make(chan vault.Incident, 4)
	cfg := guard.Config{Roots: []string{corpus}, VaultDir: vdir, Trusted: []string{o.Exe}, Alerts: alert.NewWriter(aw), Log: o.Log,
		Ready: func() { close(ready) }, OnIncident: func(i vault.Incident) { incidents <- i }}
	if o.NoDetect {
		cfg.Detector.Threshold = 1e18
	}
	nftArgv := []string{"nft"}
	if lab != nil {
		nftArgv = lab.server.Argv("nft") // the cut-off goes into the lab server's firewall
		cfg.NFT, cfg.CutOffState = nftArgv, filepath.Join(tmp, "cutoff.json")
	}
	gctx, stopGuard := context.WithCancel(ctx)
	defer stopGuard()
	var ag *agent.Agent
	var g *guard.Guard
	var agentDone chan struct{}
	if o.Hub != nil {
		host := &agent.Host{Exe: o.Exe, Vault: vdir, Hub: o.Hub.URL, NFT: nftArgv, CutOffState: filepath.Join(tmp, "cutoff.json")}
		// Blocks from the console apply to the corpus's filesystem only:
		// the drill must not hold the whole machine's executions.
		blocker, err := execblock.Start(gctx, []string{o.Exe, "execblock", "serve",
			"--state", filepath.Join(o.Hub.StateDir, "blocklist.json"), "--mounts", corpus}, nil, nil, o.Log)
		if err != nil {
			return res, err
		}
		defer func() { stopGuard(); blocker.Wait() }()
		host.Blocker = blocker
		ag, err = agent.Open(ctx, agent.Config{StateDir: o.Hub.StateDir, Hub: o.Hub.URL, Token: o.Hub.Token, Name: "drill-" + res.Profile,
			Version: "drill", Interval: time.Second, Actions: host, Log: o.Log})
		if err != nil {
			return res, err
		}
		host.AfterRestore = func(id string) {
			if inc, err := g.Incident(id); err == nil {
				ag.Report(hubstore.KindIncident, id, inc)
			}
		}
		cfg.OnIncident = func(i vault.Incident) {
			ag.Report(hubstore.KindIncident, i.ID, i)
			incidents <- i
		}
		agentDone = make(chan struct{})
		go func() { defer close(agentDone); ag.Run(gctx); ag.Close() }()
		defer func() { stopGuard(); <-agentDone }()
	}
	g, err = guard.New(cfg)
	if err != nil {
		return res, err
	}
	guardDone := make(chan error, 1)
	go func() { guardDone <- g.Run(gctx) }()
	select {
	case <-ready:
	case err := <-guardDone:
		return res, fmt.Errorf("guard did not arm: %w", err)
	}
	armedAt := time.Now()

	if lab != nil {
		if err := lab.serve(filepath.Join(tmp, "samba"), corpus); err != nil {
			return res, err
		}
		if out, err := lab.attack(ctx, corpus, filepath.Join(tmp, "workstation"), m); err != nil {
			res.SimulatorError = err.Error() + ": " + lastLine(out)
		}
	} else {
		sim := exec.CommandContext(ctx, o.Exe, "simulate", o.Profile, corpus)
		simOut, _ := os.CreateTemp(tmp, "simulator-*.log")
		sim.Stdout, sim.Stderr = simOut, simOut
		if err := sim.Run(); err != nil {
			res.SimulatorError = err.Error()
		}
		simOut.Close()
	}

	var inc vault.Incident
	if !o.NoDetect {
		select {
		case inc = <-incidents:
			res.Stopped = true
		case <-time.After(2 * time.Second):
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
	if line, _, ok := bytes.Cut(alerts.Bytes(), []byte("\n")); ok {
		res.Alert = string(line)
	}
	if lab != nil {
		res.Share = &ShareResult{Workstation: lab.wsAddr.String(), Client: inc.Client, CutOff: inc.ClientCutOff,
			WorkstationRefused: !lab.reaches(ctx, lab.workstation, lab.serverForWS),
			ColleagueServed:    lab.reaches(ctx, lab.colleague, lab.serverForCol)}
	}
	res.Damaged = len(simulate.Damage(corpus, m))
	res.AttackerFiles = len(simulate.Extra(corpus, m))

	args := []string{"restore", "--vault", vdir}
	if res.Stopped {
		res.Incident, res.Indicators = inc.ID, inc.Indicators
		res.TimeToStop = inc.FrozenAt.Sub(inc.FirstEvent)
		args = append(args, "--incident", inc.ID, corpus)
	} else {
		args = append(args, "--before", armedAt.UTC().Format(time.RFC3339Nano), corpus)
	}
	// Restore as a separate process while the guard still runs: the guard
	// must let it read the vault and must not take it for an attack.
	var out []byte
	var rerr error
	if o.Hub != nil && o.Hub.RestoreVia != nil && res.Stopped {
		rerr = o.Hub.RestoreVia(ctx, ag.HostID(), inc.ID)
		if rerr != nil {
			out = []byte(rerr.Error())
		}
	} else {
		out, rerr = exec.CommandContext(ctx, o.Exe, args...).CombinedOutput()
	}
	res.RestoreOutput = string(out)
	res.Lost = len(simulate.Damage(corpus, m))
	res.LeftOver = len(simulate.Extra(corpus, m))
	if res.Stopped {
		// A restore must never be mistaken for an attack.
		select {
		case i := <-incidents:
			return res, fmt.Errorf("the guard raised incident %s during the restore", i.ID)
		case <-time.After(300 * time.Millisecond):
		}
	}
	stopGuard()
	if err := <-guardDone; err != nil && !errors.Is(err, context.Canceled) {
		return res, fmt.Errorf("guard: %w", err)
	}
	if rerr != nil && res.Lost > 0 {
		return res, fmt.Errorf("restore: %w\n%s", rerr, out)
	}
	return res, nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
