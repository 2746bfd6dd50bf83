package alert

import (
	"encoding/json"
	"io"
	"sync"
	"time"
)

// Alert is one ECS document. Fields follow ECS 8 names.
type Alert struct {
	Timestamp  time.Time  `json:"@timestamp"`
	Message    string     `json:"message"`
	Event      Event      `json:"event"`
	Process    *Process   `json:"process,omitempty"`
	File       *File      `json:"file,omitempty"`
	Host       *Host      `json:"host,omitempty"`
	Source     *Source    `json:"source,omitempty"`
	DNS        *DNS       `json:"dns,omitempty"`
	URL        *URL       `json:"url,omitempty"`
	Killswitch Killswitch `json:"killswitch"`
}

// Event is ECS event.*.
type Event struct {
	Kind     string   `json:"kind"` // always "alert"
	Action   string   `json:"action"`
	Category []string `json:"category"`
	Type     []string `json:"type,omitempty"`
	Severity int      `json:"severity"`
}

// Process is ECS process.*.
type Process struct {
	PID         int      `json:"pid"`
	Executable  string   `json:"executable,omitempty"`
	CommandLine string   `json:"command_line,omitempty"`
	Args        []string `json:"args,omitempty"`
	Parent      *Parent  `json:"parent,omitempty"`
}

// Parent is ECS process.parent.*.
type Parent struct {
	PID int `json:"pid"`
}

// File is ECS file.*.
type File struct {
	Path string `json:"path"`
}

// Host is ECS host.*.
type Host struct {
	Name string `json:"name"`
}

// Source is ECS source.*: the host that asked.
type Source struct {
	IP string `json:"ip"`
}

// DNS is ECS dns.*.
type DNS struct {
	Question DNSQuestion `json:"question"`
}

// DNSQuestion is ECS dns.question.*.
type DNSQuestion struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// URL is ECS url.*.
type URL struct {
	Domain string `json:"domain"`
	Path   string `json:"path,omitempty"`
}

// Killswitch holds our own fields.
type Killswitch struct {
	Incident     string   `json:"incident,omitempty"`
	Score        float64  `json:"score,omitempty"`
	Indicators   []string `json:"indicators,omitempty"`
	FilesDamaged int      `json:"files_damaged,omitempty"`
	StoppedPIDs  []int    `json:"stopped_pids,omitempty"`
	Dropped      bool     `json:"events_dropped,omitempty"`
	ExecBlocked  bool     `json:"exec_blocked,omitempty"`
	// Sinkhole: which kill-switch names a host asked for, how often.
	Domains []string `json:"domains,omitempty"`
	Hits    int      `json:"hits,omitempty"`
}

// Actions.
const (
	ActionRansomwareStopped = "ransomware-stopped"
	ActionQueueOverflow     = "queue-overflow"
	ActionKillswitchLookup  = "killswitch-domain-contacted"
)

// Writer serialises alerts to w.
type Writer struct {
	mu sync.Mutex
	w  io.Writer
}

// NewWriter wraps w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write emits one alert as one line.
func (a *Writer) Write(al Alert) error {
	b, err := json.Marshal(al)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	_, err = a.w.Write(append(b, '\n'))
	return err
}
