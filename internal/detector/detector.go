package detector

import (
	"fmt"
	"math"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/killswitch-dev/killswitch/internal/content"
)

// Op is what happened to a file.
type Op string

// Ops the guard reports.
const (
	Write  Op = "write"  // closed after writing; Pre is the version before
	Create Op = "create" // a new name appeared
	Delete Op = "delete"
	Rename Op = "rename" // Path -> NewPath
)

// Actor is one process in a lineage.
type Actor struct {
	ID         string `json:"id"` // pid@starttime
	PID        int    `json:"pid"`
	Executable string `json:"executable"`
	// Server: a file server's process serving remote clients (smbd). It is
	// the last of its lineage to be scored: its ancestors serve every
	// other client too, and adding their work up would stop the server.
	Server bool `json:"server,omitempty"`
}

// Event is one observation. Lineage is nearest first (the process itself).
type Event struct {
	Time    time.Time `json:"time"`
	Lineage []Actor   `json:"lineage"`
	Op      Op        `json:"op"`
	Path    string    `json:"path"`
	NewPath string    `json:"new_path,omitempty"`
	// Preserved: the vault held the file's previous version (Delete,
	// Rename, Write). For Rename, Replaced: NewPath existed and was preserved.
	Preserved bool `json:"preserved,omitempty"`
	Replaced  bool `json:"replaced,omitempty"`
	// Pre and Post are head samples of the previous and new contents (Write).
	Pre  []byte `json:"pre,omitempty"`
	Post []byte `json:"post,omitempty"`
	// PreHash is the vault hash of the version before the event (what a
	// restore puts back); PostHash the hash written (what a restore removes).
	PreHash  string `json:"pre_hash,omitempty"`
	PostHash string `json:"post_hash,omitempty"`
}

// Config tunes the detector.
type Config struct {
	Threshold float64       // score at which a lineage is stopped
	MinFiles  int           // distinct damaged files required as well
	HalfLife  time.Duration // score decay: slow attacks still add up
	// Exempt actors (the guard and its ancestors, restore runs) are never
	// scored or stopped.
	Exempt func(Actor) bool
}

// DefaultConfig stops at three files' worth of damage.
func DefaultConfig() Config {
	return Config{Threshold: 3, MinFiles: 2, HalfLife: 2 * time.Hour}
}

// Record is one event kept in an actor's history for the incident.
type Record struct {
	Time     time.Time `json:"time"`
	Op       Op        `json:"op"`
	Path     string    `json:"path"`
	NewPath  string    `json:"new_path,omitempty"`
	PreHash  string    `json:"pre_hash,omitempty"`
	PostHash string    `json:"post_hash,omitempty"`
	Finding  string    `json:"finding,omitempty"`
	PID      int       `json:"pid"`
}

// Decision is returned when a lineage must be stopped.
type Decision struct {
	Incident   string    `json:"incident"`
	Actor      Actor     `json:"actor"` // root of the process tree to stop
	Score      float64   `json:"score"`
	Indicators []string  `json:"indicators"`
	Damaged    []string  `json:"damaged"`
	FirstEvent time.Time `json:"first_event"`
	History    []Record  `json:"history"`
}

type node struct {
	actor      Actor
	score      float64
	at         time.Time // time of score
	damaged    map[string]bool
	indicators map[string]int
	randomNew  map[string][]string        // dir -> names of random new files it wrote
	destroyed  map[string]bool            // originals it deleted or replaced, not yet paired
	notes      map[string]map[string]bool // small text hash -> dirs
	history    []Record
	first      time.Time
	stopped    string // incident id once stopped
}

// maxHistory bounds what one actor remembers for its incident, and
// maxTotalHistory what all actors remember together: past it, the histories
// of actors with no finding at all are dropped (they are nobody's incident).
const (
	maxHistory      = 100000
	maxTotalHistory = 1000000
)

// maxNodes bounds memory: the least recently active are forgotten.
const maxNodes = 50000

// Detector is not safe for concurrent use; the guard feeds it from one loop.
type Detector struct {
	cfg      Config
	nodes    map[string]*node
	knownExt map[string]bool
	history  int // records held by all nodes
}

// New returns a detector.
func New(cfg Config) *Detector {
	if cfg.Threshold <= 0 {
		cfg = DefaultConfig()
	}
	known := map[string]bool{}
	for _, e := range strings.Fields(knownExts) {
		known[e] = true
	}
	return &Detector{cfg: cfg, nodes: make(map[string]*node), knownExt: known}
}

// Finding is the per-file judgement of one event.
type Finding struct {
	Name    string  // indicator name, "" when benign
	Weight  float64 // contribution to the score
	Damaged bool    // the file's content is lost (counted towards MinFiles)
}

// NoteIndicator is the finding for the same small text in many folders.
const NoteIndicator = "same-note-in-many-folders"

// Alarming reports whether the finding is evidence about file contents
// (ciphertext, wipes, destroyed originals), as opposed to a pattern that
// benign software also makes on its own (templates copied to many folders).
// The guard watches every open closely for a while after an alarming one.
func (f Finding) Alarming() bool { return f.Name != "" && f.Name != NoteIndicator }

// NeedsPre reports whether judging a write of post to an existing file
// depends on the file's previous content. Plain text that hides no random
// payload is judged benign on its own, which spares the guard a read of the
// vault on every save of a document or log.
func NeedsPre(post []byte) bool {
	return len(post) == 0 || content.Detect(post) != content.Text || content.Hidden(post)
}

// judgeWrite scores a write on its own; indicators that need memory
// (pairing a random copy with a deleted original, notes) are in apply.
func judgeWrite(ev *Event) Finding {
	post := ev.Post
	pt := content.Detect(post)
	if ev.Pre == nil {
		// A new file. Random content is suspicious unless it is a format
		// that really decodes or is structurally what it claims to be.
		switch {
		case pt == content.Salted:
			return Finding{Name: "new-file-encrypted", Weight: 0.5}
		case pt.Compressed():
			if content.Verify(pt, post) {
				return Finding{}
			}
			return Finding{Name: "new-file-fake-" + string(pt), Weight: 0.5}
		case pt != content.Unknown && pt != content.Text && pt != content.Empty:
			if content.VerifyMedia(pt, post) {
				return Finding{}
			}
			return Finding{Name: "new-file-fake-" + string(pt), Weight: 0.5}
		case content.LooksRandom(post) || content.RandomFraction(post, 4096) >= 0.5:
			return Finding{Name: "new-file-random", Weight: 0.5}
		case content.Hidden(post):
			return Finding{Name: "new-file-encoded-random", Weight: 0.5}
		}
		return Finding{}
	}
	pre := ev.Pre
	prt := content.Detect(pre)
	if len(post) == 0 {
		if len(pre) > 0 {
			return Finding{Name: "truncated", Weight: 0.25}
		}
		return Finding{}
	}
	if content.Wiped(post) && !content.Wiped(pre) {
		return Finding{Name: "wiped", Weight: 1, Damaged: true}
	}
	// Same structured type before and after, and it verifies: an
	// application saving its own format (database, archive, image editor).
	if pt == prt && pt != content.Unknown && pt != content.Text {
		if (pt.Compressed() && content.Verify(pt, post)) || content.VerifyMedia(pt, post) {
			return Finding{}
		}
	}
	if pt != prt && pt.Compressed() && content.Verify(pt, post) {
		return Finding{} // a file compressed in place
	}
	changed := content.ChangedBytes(pre, post)
	if content.LooksRandom(changed) || content.RandomFraction(changed, 4096) >= 0.5 {
		if content.LooksRandom(pre) && pt == prt {
			return Finding{} // random before, random after: not our business
		}
		return Finding{Name: "encrypted-in-place", Weight: 1, Damaged: true}
	}
	if content.Hidden(post) && !content.Hidden(pre) {
		return Finding{Name: "encoded-random-in-place", Weight: 1, Damaged: true}
	}
	if prt != content.Text && prt != content.Unknown && prt != content.Empty && pt != prt &&
		content.Similarity(pre, post) < 0.1 {
		return Finding{Name: "type-destroyed", Weight: 0.5}
	}
	return Finding{}
}

// knownExts lists extensions that legitimate software renames files to.
const knownExts = `txt md csv json xml html htm css js ts go py c h cpp rs java rb sh yml yaml toml ini conf cfg log
		doc docx xls xlsx ppt pptx odt ods odp pdf rtf png jpg jpeg gif bmp tif tiff svg webp mp3 mp4 wav avi mkv mov
		zip gz tgz bz2 xz zst 7z tar rar bak old orig tmp swp part new db sqlite sqlite3 wal shm lock pack idx`

func ext(p string) string { return strings.ToLower(strings.TrimPrefix(path.Ext(p), ".")) }

// Observe feeds one event. It returns what the event showed on its own
// (an empty Finding for nothing) and a Decision when a lineage crosses the threshold
// (once per incident; later events of a stopped lineage are added to its
// history and return no decision).
func (d *Detector) Observe(ev Event) (*Decision, Finding) {
	var f Finding
	switch ev.Op {
	case Write:
		f = judgeWrite(&ev)
	case Rename:
		if ev.Preserved && ext(ev.NewPath) != ext(ev.Path) && !d.knownExt[ext(ev.NewPath)] {
			f = Finding{Name: "renamed-unknown-extension", Weight: 0.25}
		}
	}
	var best *node
	var finding Finding
	for i, a := range ev.Lineage {
		if d.cfg.Exempt != nil && d.cfg.Exempt(a) {
			break // an exempt process and all its ancestors are out of scope
		}
		n := d.node(a, ev.Time)
		if got := d.apply(n, &ev, f); i == 0 {
			finding = got
		}
		if n.stopped != "" {
			return nil, finding // already being stopped: history recorded above
		}
		// The tolerance keeps a few seconds of decay from costing a whole file.
		if best == nil && n.score >= d.cfg.Threshold-0.05 && len(n.damaged) >= d.cfg.MinFiles {
			best = n
		}
		if a.Server {
			break
		}
	}
	if best == nil {
		return nil, finding
	}
	return d.decide(best), finding
}

func (d *Detector) node(a Actor, now time.Time) *node {
	n, ok := d.nodes[a.ID]
	if !ok {
		if len(d.nodes) >= maxNodes {
			d.evict()
		}
		n = &node{actor: a, at: now, damaged: map[string]bool{}, indicators: map[string]int{},
			randomNew: map[string][]string{}, destroyed: map[string]bool{}, notes: map[string]map[string]bool{}}
		d.nodes[a.ID] = n
	}
	if dt := now.Sub(n.at); dt > 0 && d.cfg.HalfLife > 0 {
		n.score *= math.Exp2(-dt.Seconds() / d.cfg.HalfLife.Seconds())
		n.at = now
	}
	return n
}

// evict forgets the quietest half of the nodes that are not stopped.
func (d *Detector) evict() {
	type kv struct {
		id string
		at time.Time
	}
	var all []kv
	for id, n := range d.nodes {
		if n.stopped == "" {
			all = append(all, kv{id, n.at})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].at.Before(all[j].at) })
	for _, e := range all[:len(all)/2] {
		d.history -= len(d.nodes[e.id].history)
		delete(d.nodes, e.id)
	}
}

// apply adds one event to an actor's state. The kernel reports a file's
// close-write and its renames and deletes on two queues, so a random copy
// and the destruction of the original it is named after may arrive in
// either order: both orders pair up.
func (d *Detector) apply(n *node, ev *Event, f Finding) Finding {
	dir := path.Dir(ev.Path)
	var paired Finding
	pairedTarget := ""
	switch ev.Op {
	case Write:
		if f.Name == "new-file-random" || f.Name == "new-file-encrypted" || f.Name == "new-file-encoded-random" ||
			strings.HasPrefix(f.Name, "new-file-fake-") {
			if names := n.randomNew[dir]; len(names) < 256 {
				n.randomNew[dir] = append(names, path.Base(ev.Path))
			}
			if orig, ok := n.takeDestroyed(ev.Path); ok {
				paired, pairedTarget = Finding{Name: "original-destroyed-for-random-copy", Weight: 0.5, Damaged: true}, orig
			}
		}
		if ev.Pre == nil && len(ev.Post) > 0 && len(ev.Post) <= 8192 && content.Detect(ev.Post) == content.Text && ev.PostHash != "" {
			dirs := n.notes[ev.PostHash]
			if dirs == nil {
				if len(n.notes) > 1000 {
					clear(n.notes)
				}
				dirs = map[string]bool{}
				n.notes[ev.PostHash] = dirs
			}
			if !dirs[dir] {
				dirs[dir] = true
				if len(dirs) >= 3 {
					f = Finding{Name: NoteIndicator, Weight: 1}
				}
			}
		}
	case Delete:
		switch {
		case ev.Preserved && n.pairedCopy(ev.Path):
			f = Finding{Name: "original-deleted-after-random-copy", Weight: 0.5, Damaged: true}
		case ev.Preserved:
			n.noteDestroyed(ev.Path)
		}
	case Rename:
		switch {
		case ev.Replaced && (n.pairedCopy(ev.NewPath) || d.isRandomNew(n, ev.Path)):
			f = Finding{Name: "original-replaced-by-random-copy", Weight: 0.5, Damaged: true}
		case ev.Replaced:
			n.noteDestroyed(ev.NewPath)
		}
	}
	target := ev.Path
	if ev.Op == Rename {
		target = ev.NewPath
	}
	n.count(f, target, ev.Time)
	n.count(paired, pairedTarget, ev.Time)
	if d.history >= maxTotalHistory {
		d.dropQuietHistories()
	}
	if len(n.history) < maxHistory {
		d.history++
		pid := 0
		if len(ev.Lineage) > 0 {
			pid = ev.Lineage[0].PID
		}
		n.history = append(n.history, Record{Time: ev.Time, Op: ev.Op, Path: ev.Path, NewPath: ev.NewPath,
			PreHash: ev.PreHash, PostHash: ev.PostHash, Finding: f.Name, PID: pid})
	}
	if f.Name == "" {
		return paired
	}
	return f
}

func (d *Detector) dropQuietHistories() {
	for _, n := range d.nodes {
		if n.first.IsZero() && n.stopped == "" {
			d.history -= len(n.history)
			n.history = nil
		}
	}
}

// Memory reports how many history records the detector holds.
func (d *Detector) Memory() int { return d.history }

func (n *node) count(f Finding, target string, t time.Time) {
	if f.Name == "" {
		return
	}
	if n.first.IsZero() {
		n.first = t
	}
	n.score += f.Weight
	n.indicators[f.Name]++
	if f.Damaged {
		n.damaged[target] = true
	}
}

// noteDestroyed remembers a preserved original that the actor deleted or
// replaced before any random copy of it was seen.
func (n *node) noteDestroyed(p string) {
	if len(n.destroyed) >= 4096 {
		clear(n.destroyed)
	}
	n.destroyed[p] = true
}

// takeDestroyed finds (and forgets) the destroyed original that the random
// new file p is a copy of: the same path (renamed over it) or a name that
// p's name extends (a.docx -> a.docx.WNCRY).
func (n *node) takeDestroyed(p string) (string, bool) {
	if n.destroyed[p] {
		delete(n.destroyed, p)
		return p, true
	}
	dir, base := path.Dir(p), path.Base(p)
	for orig := range n.destroyed {
		if path.Dir(orig) == dir && strings.HasPrefix(base, path.Base(orig)+".") {
			delete(n.destroyed, orig)
			return orig, true
		}
	}
	return "", false
}

// pairedCopy reports whether the actor wrote a random new file named after
// p in p's folder (a.docx -> a.docx.WNCRYT, a.docx.encrypted, a.enc): the
// ciphertext copy whose original p is now being destroyed.
func (n *node) pairedCopy(p string) bool {
	base := path.Base(p)
	stem := strings.TrimSuffix(base, path.Ext(base))
	for _, name := range n.randomNew[path.Dir(p)] {
		if name != base && (strings.HasPrefix(name, base) || (len(stem) >= 3 && strings.HasPrefix(name, stem+"."))) {
			return true
		}
	}
	return false
}

// isRandomNew reports whether p is one of the actor's random new files
// (renamed over an original: the rename-over pattern).
func (d *Detector) isRandomNew(n *node, p string) bool {
	for _, name := range n.randomNew[path.Dir(p)] {
		if name == path.Base(p) {
			return true
		}
	}
	return false
}

func (d *Detector) decide(n *node) *Decision {
	n.stopped = fmt.Sprintf("ks-%s-%d", n.first.UTC().Format("20060102T150405"), n.actor.PID)
	var inds []string
	for k, v := range n.indicators {
		inds = append(inds, fmt.Sprintf("%s x%d", k, v))
	}
	sort.Strings(inds)
	var damaged []string
	for p := range n.damaged {
		damaged = append(damaged, p)
	}
	sort.Strings(damaged)
	return &Decision{Incident: n.stopped, Actor: n.actor, Score: math.Round(n.score*100) / 100,
		Indicators: inds, Damaged: damaged, FirstEvent: n.first, History: n.history}
}

// History returns what an actor has done so far (for incidents whose
// lineage keeps producing events after the decision).
func (d *Detector) History(actorID string) []Record {
	if n, ok := d.nodes[actorID]; ok {
		return n.history
	}
	return nil
}

// Forget drops an actor's state (its process tree is gone).
func (d *Detector) Forget(actorID string) {
	if n, ok := d.nodes[actorID]; ok {
		d.history -= len(n.history)
		delete(d.nodes, actorID)
	}
}
