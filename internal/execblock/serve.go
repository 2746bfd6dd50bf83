package execblock

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
)

// The blocker runs in a process of its own, driven over a pipe, because
// the process that answers execution events must never start a program
// itself: Go starts programs with vfork, and the parent thread then holds
// its scheduler slot until the child's exec is answered; if the runtime
// needs to stop the world meanwhile (a garbage collection), nothing can
// answer and every execution on the host waits. The guard and the agent
// start programs (restore, nft), so they talk to this process instead.
//
// The protocol is JSON Lines: a Request per line in, a Response per line
// out (same id), and Events (id 0) whenever an execution is refused.

// Request is one command to the blocker process.
type Request struct {
	ID     int64  `json:"id"`
	Op     string `json:"op"` // block, unblock, block-file, list, running, stats
	SHA256 string `json:"sha256,omitempty"`
	Path   string `json:"path,omitempty"` // block-file
	Note   string `json:"note,omitempty"`
}

// Response answers the Request with the same ID; ID 0 carries a Denial.
type Response struct {
	ID      int64   `json:"id"`
	Error   string  `json:"error,omitempty"`
	Changed bool    `json:"changed,omitempty"` // block: newly added; unblock: was there
	Entries []Entry `json:"entries,omitempty"`
	PIDs    []int   `json:"pids,omitempty"`
	Stats   *Stats  `json:"stats,omitempty"`
	Watched int     `json:"watched,omitempty"`
	Denial  *Denial `json:"denial,omitempty"`
}

const maxLine = 64 << 10

// ErrBadRequest is wrapped by DecodeRequest's errors.
var ErrBadRequest = errors.New("execblock: bad request")

// DecodeRequest parses and checks one protocol line.
func DecodeRequest(line []byte) (Request, error) {
	var r Request
	if len(line) > maxLine {
		return r, fmt.Errorf("%w: line of %d bytes", ErrBadRequest, len(line))
	}
	if err := json.Unmarshal(line, &r); err != nil {
		return r, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if r.ID <= 0 {
		return r, fmt.Errorf("%w: id must be positive", ErrBadRequest)
	}
	switch r.Op {
	case "block", "unblock", "running":
		if _, err := ParseSum(r.SHA256); err != nil {
			return r, fmt.Errorf("%w: %v", ErrBadRequest, err)
		}
	case "block-file":
		if !strings.HasPrefix(r.Path, "/") || len(r.Path) > 4096 || strings.ContainsRune(r.Path, 0) {
			return r, fmt.Errorf("%w: block-file needs an absolute path", ErrBadRequest)
		}
	case "list", "stats":
	default:
		return r, fmt.Errorf("%w: unknown op %q", ErrBadRequest, r.Op)
	}
	if err := checkNote(r.Note); err != nil {
		return r, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	return r, nil
}

// Serve runs a blocker with cfg, taking commands from in and writing
// responses and denials to out, until in is closed (the parent is gone)
// or ctx is done.
func Serve(ctx context.Context, cfg Config, in io.Reader, out io.Writer) error {
	var wmu sync.Mutex
	enc := json.NewEncoder(out)
	send := func(r Response) {
		wmu.Lock()
		defer wmu.Unlock()
		enc.Encode(r)
	}
	cfg.OnDeny = func(d Denial) { send(Response{Denial: &d}) }
	b, err := Open(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	go func() {
		defer cancel()
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 4096), maxLine+1)
		for sc.Scan() {
			req, err := DecodeRequest(sc.Bytes())
			if err != nil {
				send(Response{ID: req.ID, Error: err.Error()})
				continue
			}
			send(b.handle(req))
		}
	}()
	return <-done
}

func (b *Blocker) handle(req Request) Response {
	resp := Response{ID: req.ID}
	sum, _ := ParseSum(req.SHA256)
	var err error
	switch req.Op {
	case "block":
		resp.Changed, err = b.Block(sum, req.Note)
		resp.Watched = b.Watched()
	case "unblock":
		resp.Changed, err = b.Unblock(sum)
	case "block-file":
		err = b.BlockFile(req.Path, req.Note)
	case "list":
		resp.Entries = b.List()
	case "running":
		resp.PIDs = b.Running(sum)
	case "stats":
		st := b.Stats()
		resp.Stats = &st
		resp.Watched = b.Watched()
	}
	if err != nil {
		resp.Error = err.Error()
	}
	return resp
}
