package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/killswitch-dev/killswitch/internal/testenv"
)

// backends opens every store the suite runs against: SQLite always, and
// PostgreSQL at KILLSWITCH_TEST_POSTGRES (test.sh and CI start one).
func backends(t *testing.T) map[string]func(t *testing.T) Store {
	return map[string]func(t *testing.T) Store{
		"sqlite": func(t *testing.T) Store {
			s, err := Open(context.Background(), filepath.Join(t.TempDir(), "hub.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
		"postgres": func(t *testing.T) Store {
			dsn := os.Getenv("KILLSWITCH_TEST_POSTGRES")
			if dsn == "" {
				testenv.Skip(t, "KILLSWITCH_TEST_POSTGRES is not set (./test.sh starts a PostgreSQL server and sets it)")
			}
			s, err := Open(context.Background(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			// a clean database for each test
			d := s.(*db)
			for _, tbl := range []string{"tokens", "hosts", "reports", "incidents", "scans", "actions", "audit", "users", "sessions", "blocklist"} {
				if _, err := d.sql.Exec("DELETE FROM " + tbl); err != nil {
					t.Fatal(err)
				}
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
	}
}

// TestConformance runs the same checks against every backend.
func TestConformance(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			for _, c := range []struct {
				name string
				fn   func(t *testing.T, s Store)
			}{
				{"tokens are one-time", testTokens},
				{"hosts", testHosts},
				{"reports are applied exactly once", testExactlyOnce},
				{"actions", testActions},
				{"users, sessions, audit", testUsers},
				{"concurrent ingest", testConcurrentIngest},
				{"blocklist", testBlocklist},
			} {
				t.Run(c.name, func(t *testing.T) { c.fn(t, open(t)) })
			}
		})
	}
}

var ctx = context.Background()

func testTokens(t *testing.T, s Store) {
	now := time.Now()
	if err := s.CreateToken(ctx, "t1", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	s.CreateToken(ctx, "old", now.Add(-time.Second))
	if err := s.UseToken(ctx, "t1", "h1", now); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{"t1", "old", "never-made"} {
		if err := s.UseToken(ctx, tok, "h2", now); !errors.Is(err, ErrTokenInvalid) {
			t.Errorf("token %s: %v, want ErrTokenInvalid", tok, err)
		}
	}
}

func addHost(t *testing.T, s Store, id string) {
	t.Helper()
	if err := s.AddHost(ctx, Host{ID: id, Name: "host-" + id, Enrolled: time.Now(), CertSerial: "serial-" + id}); err != nil {
		t.Fatal(err)
	}
}

func testHosts(t *testing.T, s Store) {
	addHost(t, s, "b")
	addHost(t, s, "a")
	if err := s.AddHost(ctx, Host{ID: "a", Name: "dup", CertSerial: "x"}); err == nil {
		t.Error("duplicate host id accepted")
	}
	now := time.Now().Truncate(time.Microsecond)
	if err := s.SeenMany(ctx, []Heartbeat{{HostID: "a", Addr: "10.0.0.5:4431", Version: "v1", Isolated: true, Time: now}}); err != nil {
		t.Fatal(err)
	}
	h, err := s.Host(ctx, "a")
	if err != nil || !h.LastSeen.Equal(now) || h.Addr != "10.0.0.5:4431" || !h.Isolated || h.Version != "v1" {
		t.Errorf("host %+v %v", h, err)
	}
	later := now.Add(time.Second)
	if err := s.SeenMany(ctx, []Heartbeat{{HostID: "a", Addr: "10.0.0.6:1", Version: "v2", Time: later}, {HostID: "b", Time: later}}); err != nil {
		t.Fatal(err)
	}
	if h, _ := s.Host(ctx, "a"); !h.LastSeen.Equal(later) || h.Version != "v2" || h.Isolated {
		t.Errorf("after SeenMany: %+v", h)
	}
	if err := s.SetRevoked(ctx, "b", true); err != nil {
		t.Fatal(err)
	}
	hosts, _ := s.Hosts(ctx)
	if len(hosts) != 2 || hosts[0].ID != "a" || !hosts[1].Revoked {
		t.Errorf("hosts %+v", hosts)
	}
	if _, err := s.Host(ctx, "zz"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing host: %v", err)
	}
	if err := s.SetRevoked(ctx, "zz", true); !errors.Is(err, ErrNotFound) {
		t.Errorf("revoke missing host: %v", err)
	}
}

func testExactlyOnce(t *testing.T, s Store) {
	addHost(t, s, "h")
	now := time.Now()
	inc := Report{ID: "r1", Seq: 1, Kind: KindIncident, Key: "inc-1", Time: now, Body: []byte(`{"state":"open"}`)}
	for i, want := range []Outcome{NewIncident, Duplicate, Duplicate} { // redelivered after lost acknowledgements
		got, err := s.Ingest(ctx, "h", inc, now)
		if err != nil || got != want {
			t.Fatalf("delivery %d: %v, %v; want %v", i, got, err, want)
		}
	}
	upd := Report{ID: "r2", Seq: 2, Kind: KindIncident, Key: "inc-1", Time: now.Add(time.Second), Body: []byte(`{"state":"restored"}`)}
	if got, err := s.Ingest(ctx, "h", upd, now); got != Applied || err != nil {
		t.Fatal(got, err)
	}
	scan := Report{ID: "r3", Seq: 3, Kind: KindScan, Key: "10.0.0.9:445", Time: now, Body: []byte(`{"ms17_010":"vulnerable"}`)}
	s.Ingest(ctx, "h", scan, now)
	incs, err := s.Incidents(ctx, 10)
	if err != nil || len(incs) != 1 || string(incs[0].Body) != `{"state":"restored"}` || incs[0].HostName != "host-h" {
		t.Fatalf("incidents %+v %v", incs, err)
	}
	one, err := s.Incident(ctx, incs[0].ID)
	if err != nil || one.AgentKey != "inc-1" {
		t.Errorf("incident %+v %v", one, err)
	}
	scans, _ := s.ScanResults(ctx)
	if len(scans) != 1 || scans[0].Key != "10.0.0.9:445" {
		t.Errorf("scans %+v", scans)
	}
	if _, err := s.Ingest(ctx, "h", Report{ID: "r4", Kind: "nonsense", Body: []byte(`{}`)}, now); err == nil {
		t.Error("unknown kind accepted")
	}
	// the failed report left no ledger entry: a fixed resend is applied
	if got, err := s.Ingest(ctx, "h", Report{ID: "r4", Kind: KindScan, Key: "k", Body: []byte(`{}`)}, now); got != Applied || err != nil {
		t.Errorf("resend after a failure: %v %v", got, err)
	}
}

func testActions(t *testing.T, s Store) {
	addHost(t, s, "h")
	now := time.Now()
	for i, kind := range []string{"restore", "isolate"} {
		if err := s.QueueAction(ctx, Action{ID: fmt.Sprint("a", i), HostID: "h", Kind: kind, Args: "x", CreatedBy: "alice", Created: now.Add(time.Duration(i))}); err != nil {
			t.Fatal(err)
		}
	}
	if q, err := s.QueuedHosts(ctx); err != nil || len(q) != 1 || q[0] != "h" {
		t.Errorf("queued hosts %v %v", q, err)
	}
	got, err := s.TakeActions(ctx, "h", now)
	if err != nil || len(got) != 2 || got[0].Kind != "restore" || got[0].State != ActionRunning {
		t.Fatalf("take %+v %v", got, err)
	}
	if again, _ := s.TakeActions(ctx, "h", now); len(again) != 0 {
		t.Errorf("actions handed out twice: %+v", again)
	}
	if q, _ := s.QueuedHosts(ctx); len(q) != 0 {
		t.Errorf("queued hosts after taking: %v", q)
	}
	res := Report{ID: "res-a0", Kind: KindActionResult, Key: "a0", Time: now, Body: []byte(`{"ok":true,"result":"12 files restored"}`)}
	if got, err := s.Ingest(ctx, "h", res, now); got != Applied || err != nil {
		t.Fatal(got, err)
	}
	all, _ := s.Actions(ctx, 10)
	states := map[string]string{}
	for _, a := range all {
		states[a.ID] = a.State + ":" + a.Result
	}
	if states["a0"] != "done:12 files restored" || states["a1"] != "running:" {
		t.Errorf("states %v", states)
	}
}

func testUsers(t *testing.T, s Store) {
	if err := s.PutUser(ctx, User{Name: "alice", Hash: "h1", Role: "viewer"}); err != nil {
		t.Fatal(err)
	}
	s.PutUser(ctx, User{Name: "alice", Hash: "h2", Role: "responder"})
	u, err := s.User(ctx, "alice")
	if err != nil || u.Hash != "h2" || u.Role != "responder" {
		t.Errorf("user %+v %v", u, err)
	}
	now := time.Now()
	s.CreateSession(ctx, "s1", "alice", now.Add(time.Hour))
	s.CreateSession(ctx, "s2", "alice", now.Add(-time.Hour))
	if u, err := s.Session(ctx, "s1", now); err != nil || u.Name != "alice" {
		t.Errorf("live session: %+v %v", u, err)
	}
	if _, err := s.Session(ctx, "s2", now); !errors.Is(err, ErrNotFound) {
		t.Errorf("expired session: %v", err)
	}
	s.DeleteSession(ctx, "s1")
	if _, err := s.Session(ctx, "s1", now); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted session: %v", err)
	}
	for i := range 3 {
		s.AddAudit(ctx, AuditEntry{Time: now.Add(time.Duration(i) * time.Second), Actor: "alice", Action: fmt.Sprint("act", i)})
	}
	log, _ := s.Audit(ctx, 2)
	if len(log) != 2 || log[0].Action != "act2" {
		t.Errorf("audit %+v", log)
	}
}

// testConcurrentIngest: many writers, each report applied once.
func testConcurrentIngest(t *testing.T, s Store) {
	addHost(t, s, "h")
	var wg sync.WaitGroup
	applied := make(chan Outcome, 200)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 { // every writer sends the same 25 reports
				ok, err := s.Ingest(ctx, "h", Report{ID: fmt.Sprint("r", i), Seq: int64(i), Kind: KindIncident, Key: fmt.Sprint("inc", i), Body: []byte(`{}`)}, time.Now())
				if err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				applied <- ok
			}
		}()
	}
	wg.Wait()
	close(applied)
	n := 0
	for o := range applied {
		if o != Duplicate {
			n++
		}
	}
	if n != 25 {
		t.Errorf("%d reports applied, want 25", n)
	}
}

func testBlocklist(t *testing.T, s Store) {
	a := Block{SHA256: strings.Repeat("a", 64), Note: "incident 1", CreatedBy: "alice", Created: time.Now()}
	b := Block{SHA256: strings.Repeat("b", 64), CreatedBy: "bob", Created: a.Created.Add(time.Second)}
	for _, blk := range []Block{a, b} {
		if added, err := s.AddBlock(ctx, blk); !added || err != nil {
			t.Fatalf("AddBlock = %v, %v", added, err)
		}
	}
	if added, err := s.AddBlock(ctx, a); added || err != nil {
		t.Fatalf("AddBlock twice = %v, %v", added, err)
	}
	list, err := s.Blocklist(ctx)
	if err != nil || len(list) != 2 || list[0].SHA256 != a.SHA256 || list[0].Note != "incident 1" || list[0].CreatedBy != "alice" || !list[0].Created.Equal(a.Created) {
		t.Fatalf("Blocklist = %+v, %v", list, err)
	}
	if removed, err := s.RemoveBlock(ctx, a.SHA256); !removed || err != nil {
		t.Fatalf("RemoveBlock = %v, %v", removed, err)
	}
	if removed, _ := s.RemoveBlock(ctx, a.SHA256); removed {
		t.Fatal("removed twice")
	}
	if list, _ := s.Blocklist(ctx); len(list) != 1 || list[0].SHA256 != b.SHA256 {
		t.Fatalf("after remove: %+v", list)
	}
	// A fleet-wide action is queued for every host or for none.
	now := time.Now()
	batch := []Action{{ID: "f1", HostID: "h1", Kind: "block-hash", Args: b.SHA256, CreatedBy: "bob", Created: now},
		{ID: "f2", HostID: "h2", Kind: "block-hash", Args: b.SHA256, CreatedBy: "bob", Created: now},
		{ID: "f1", HostID: "h3", Kind: "block-hash", Args: b.SHA256, CreatedBy: "bob", Created: now}}
	if err := s.QueueActions(ctx, batch); err == nil {
		t.Fatal("a batch with a repeated id was queued")
	}
	if acts, _ := s.Actions(ctx, 10); len(acts) != 0 {
		t.Fatalf("a failed batch left %d actions", len(acts))
	}
	if err := s.QueueActions(ctx, batch[:2]); err != nil {
		t.Fatal(err)
	}
	if q, _ := s.QueuedHosts(ctx); len(q) != 2 {
		t.Fatalf("queued hosts after a batch: %v", q)
	}
	// An exec-blocked report opens an incident like a guard's does.
	rep := Report{ID: "x1", Kind: KindExecBlocked, Key: "exec-" + b.SHA256, Time: time.Now(), Body: []byte(`{"count":1}`)}
	if got, err := s.Ingest(ctx, "h", rep, time.Now()); got != NewIncident || err != nil {
		t.Fatalf("Ingest exec-blocked = %v, %v", got, err)
	}
}
