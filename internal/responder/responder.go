package responder

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/killswitch-dev/killswitch/internal/actor"
)

// Responder knows which PIDs it must never touch.
type Responder struct {
	Proc    string
	Protect func(pid int) bool // the guard itself and its ancestors, PID 1
}

// Freeze stops root and every descendant, re-listing until no new process
// appears (a fork racing with us is caught on the next pass). It returns
// the PIDs stopped.
func (r *Responder) Freeze(root int) ([]int, error) {
	if root <= 1 || (r.Protect != nil && r.Protect(root)) {
		return nil, fmt.Errorf("responder: refusing to stop protected pid %d", root)
	}
	stopped := map[int]bool{}
	var order []int
	for pass := 0; pass < 16; pass++ {
		pids, err := actor.Descendants(r.Proc, root)
		if err != nil {
			return order, err
		}
		fresh := 0
		for _, pid := range pids {
			if stopped[pid] || pid <= 1 || (r.Protect != nil && r.Protect(pid)) {
				continue
			}
			if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil && !errors.Is(err, syscall.ESRCH) {
				return order, fmt.Errorf("responder: SIGSTOP %d: %w", pid, err)
			}
			stopped[pid] = true
			order = append(order, pid)
			fresh++
		}
		if fresh == 0 {
			break
		}
	}
	return order, nil
}

// Kill sends SIGKILL to pids (a frozen tree dies without running any more code).
func (r *Responder) Kill(pids []int) {
	for _, pid := range pids {
		if pid > 1 && (r.Protect == nil || !r.Protect(pid)) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
