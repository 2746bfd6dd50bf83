package execblock

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Process is the parent's handle on a blocker process (see Serve). It
// restarts the process if it dies; the list lives in its state file, so
// nothing is forgotten across a restart.
type Process struct {
	argv   []string
	env    []string
	onDeny func(Denial)
	log    *slog.Logger

	mu      sync.Mutex
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	nextID  int64
	waiting map[int64]chan Response
	stopped bool
	done    chan struct{} // closed when supervise returns
}

// pid is the current blocker process's (for tests).
func (p *Process) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}

// Wait returns once ctx is done and the process has exited.
func (p *Process) Wait() { <-p.done }

// ErrStopped is returned by calls after Stop.
var ErrStopped = errors.New("execblock: blocker process stopped")

// Start runs argv (typically: killswitch execblock --state FILE) with env
// added, and keeps it running until ctx is done. onDeny may be nil.
func Start(ctx context.Context, argv, env []string, onDeny func(Denial), log *slog.Logger) (*Process, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Process{argv: argv, env: env, onDeny: onDeny, log: log, waiting: map[int64]chan Response{}, done: make(chan struct{})}
	exited, err := p.spawn()
	if err != nil {
		return nil, err
	}
	go p.supervise(ctx, exited)
	return p, nil
}

func (p *Process) spawn() (<-chan error, error) {
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("execblock: starting %s: %w", p.argv[0], err)
	}
	p.mu.Lock()
	p.cmd, p.stdin = cmd, stdin
	p.mu.Unlock()
	exited := make(chan error, 1)
	go func() {
		p.read(stdout)
		exited <- cmd.Wait()
	}()
	return exited, nil
}

// read dispatches responses and denials until the process's stdout closes.
func (p *Process) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 16<<20)
	for sc.Scan() {
		var resp Response
		if err := json.Unmarshal(sc.Bytes(), &resp); err != nil {
			p.log.Error("execblock: unreadable reply", "err", err)
			continue
		}
		if resp.ID == 0 {
			if resp.Denial != nil && p.onDeny != nil {
				p.onDeny(*resp.Denial)
			}
			continue
		}
		p.mu.Lock()
		ch := p.waiting[resp.ID]
		delete(p.waiting, resp.ID)
		p.mu.Unlock()
		if ch != nil {
			ch <- resp
		}
	}
}

// supervise restarts the process when it dies, kills it when it stops
// answering (the kernel then allows every execution it held), and stops
// it with ctx.
func (p *Process) supervise(ctx context.Context, exited <-chan error) {
	defer close(p.done)
	health := time.NewTicker(healthEvery)
	defer health.Stop()
	// A process that keeps dying (no fanotify here, say) is restarted ever
	// more slowly, up to once a minute.
	delay, started := time.Second, time.Now()
	for {
		select {
		case <-ctx.Done():
			p.mu.Lock()
			p.stopped = true
			p.stdin.Close() // the process ends when its input does
			p.mu.Unlock()
			<-exited
			p.failWaiting()
			return
		case <-health.C:
			go p.check(ctx)
			continue
		case err := <-exited:
			p.failWaiting()
			if time.Since(started) > time.Minute {
				delay = time.Second
			} else {
				delay = min(2*delay, time.Minute)
			}
			p.log.Error("execblock: blocker process died; restarting", "err", err, "in", delay)
		}
		for {
			select {
			case <-ctx.Done():
				p.mu.Lock()
				p.stopped = true
				p.mu.Unlock()
				return
			case <-time.After(delay):
			}
			var err error
			if exited, err = p.spawn(); err == nil {
				started = time.Now()
				break
			}
			p.log.Error("execblock: restarting the blocker process", "err", err)
		}
	}
}

const healthEvery = 5 * time.Second

// check kills the process if it does not answer within a few seconds.
func (p *Process) check(ctx context.Context) {
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, _, err := p.Stats(cctx); errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		p.log.Error("execblock: blocker process not answering; killing it (pending executions are allowed)")
		cmd.Process.Kill()
	}
}

func (p *Process) failWaiting() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, ch := range p.waiting {
		ch <- Response{ID: id, Error: "blocker process exited"}
		delete(p.waiting, id)
	}
}

// call sends one request and waits for its response.
func (p *Process) call(ctx context.Context, req Request) (Response, error) {
	ch := make(chan Response, 1)
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return Response{}, ErrStopped
	}
	p.nextID++
	req.ID = p.nextID
	p.waiting[req.ID] = ch
	line, _ := json.Marshal(req)
	_, err := p.stdin.Write(append(line, '\n'))
	p.mu.Unlock()
	if err != nil {
		return Response{}, fmt.Errorf("execblock: %w", err)
	}
	select {
	case resp := <-ch:
		if resp.Error != "" {
			if strings.HasPrefix(resp.Error, ErrEssential.Error()) {
				return resp, fmt.Errorf("%w%s", ErrEssential, strings.TrimPrefix(resp.Error, ErrEssential.Error()))
			}
			return resp, errors.New(resp.Error)
		}
		return resp, nil
	case <-ctx.Done():
		p.mu.Lock()
		delete(p.waiting, req.ID)
		p.mu.Unlock()
		return Response{}, ctx.Err()
	}
}

// Block adds sum to the list; it reports whether it is new there. The
// block is enforced and saved when it returns.
func (p *Process) Block(ctx context.Context, sum Sum, note string) (bool, error) {
	resp, err := p.call(ctx, Request{Op: "block", SHA256: sum.String(), Note: note})
	return resp.Changed, err
}

// BlockFile refuses executions of the file at path (its inode) for as long
// as the blocker runs.
func (p *Process) BlockFile(ctx context.Context, path, note string) error {
	_, err := p.call(ctx, Request{Op: "block-file", Path: path, Note: note})
	return err
}

// Unblock removes sum from the list; it reports whether it was there.
func (p *Process) Unblock(ctx context.Context, sum Sum) (bool, error) {
	resp, err := p.call(ctx, Request{Op: "unblock", SHA256: sum.String()})
	return resp.Changed, err
}

// List returns the blocked binaries.
func (p *Process) List(ctx context.Context) ([]Entry, error) {
	resp, err := p.call(ctx, Request{Op: "list"})
	return resp.Entries, err
}

// Running lists the processes running sum now.
func (p *Process) Running(ctx context.Context, sum Sum) ([]int, error) {
	resp, err := p.call(ctx, Request{Op: "running", SHA256: sum.String()})
	return resp.PIDs, err
}

// Stats returns the blocker's counters and how many filesystems it watches.
func (p *Process) Stats(ctx context.Context) (Stats, int, error) {
	resp, err := p.call(ctx, Request{Op: "stats"})
	if resp.Stats == nil {
		return Stats{}, 0, err
	}
	return *resp.Stats, resp.Watched, err
}
