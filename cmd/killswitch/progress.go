package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// progress reports long jobs on stderr: a bar redrawn in place on a
// terminal, a line every 10% otherwise (logs stay readable).
type progress struct {
	w           io.Writer
	tty         bool
	label, unit string
	min         int // jobs smaller than this show nothing
	last        time.Time
	lastPct     int
	extra       func() string // appended to each report, e.g. a rate
}

func newProgress(stderr io.Writer, label, unit string, min int) *progress {
	p := &progress{w: stderr, label: label, unit: unit, min: min, lastPct: -1}
	if f, ok := stderr.(*os.File); ok {
		_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		p.tty = err == nil
	}
	return p
}

func (p *progress) update(done, total int) {
	if total < p.min || total <= 0 {
		return
	}
	pct := done * 100 / total
	extra := ""
	if p.extra != nil {
		extra = "  " + p.extra()
	}
	switch {
	case p.tty && (time.Since(p.last) > 100*time.Millisecond || done == total):
		bar := strings.Repeat("#", pct/5) + strings.Repeat(".", 20-pct/5)
		fmt.Fprintf(p.w, "\r%s [%s] %3d%% %d/%d %s%s\x1b[K", p.label, bar, pct, done, total, p.unit, extra)
		if done == total {
			fmt.Fprintln(p.w)
		}
		p.last = time.Now()
	case !p.tty && pct/10 != p.lastPct/10:
		fmt.Fprintf(p.w, "%s: %d%% (%d/%d %s)%s\n", p.label, pct, done, total, p.unit, extra)
		p.lastPct = pct
	}
}

// finish ends an interrupted bar's line on a terminal.
func (p *progress) finish() {
	if p.tty && !p.last.IsZero() {
		fmt.Fprintln(p.w)
	}
}
