package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"time"

	"github.com/killswitch-dev/killswitch/internal/agent"
)

const defaultAgentState = "/var/lib/killswitch/agent"

// agentFlags are the flags of every command that can report to a hub.
type agentFlags struct {
	hub, token, state *string
	interval          *time.Duration
}

func addAgentFlags(fs *flag.FlagSet) agentFlags {
	return agentFlags{
		hub:      fs.String("hub", "", "report to this hub (https://HOST:PORT); enrols on first use with --token"),
		token:    fs.String("token", "", "one-time enrolment token from 'killswitch hub token' (first use only)"),
		state:    fs.String("agent-state", defaultAgentState, "the agent's identity, keys and outbox"),
		interval: fs.Duration("hub-interval", 10*time.Second, "time between heartbeats (queued actions are picked up on each)"),
	}
}

// open links to the hub, or returns nil when no --hub was given.
func (f agentFlags) open(ctx context.Context, actions agent.Executor, log *slog.Logger) (*agent.Agent, error) {
	if *f.hub == "" {
		return nil, nil
	}
	name, _ := os.Hostname()
	return agent.Open(ctx, agent.Config{StateDir: *f.state, Hub: *f.hub, Token: *f.token, Name: name, Version: version, Interval: *f.interval, Actions: actions, Log: log})
}

// flush delivers what a short-lived command queued, for up to d; what is
// left is delivered by the next command or guard that runs with --hub.
func flush(ctx context.Context, a *agent.Agent, d time.Duration) int {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	for a.Pending() > 0 && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	<-done
	return a.Pending()
}
