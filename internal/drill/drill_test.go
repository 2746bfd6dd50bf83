package drill

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/killswitch-dev/killswitch/internal/simulate"
	"github.com/killswitch-dev/killswitch/internal/testenv"
)

// TestEveryProfileStoppedAndRestored is the acceptance test: each
// behaviour family is stopped within a few files, and restore --incident
// brings back every file and removes every file the attack made.
func TestEveryProfileStoppedAndRestored(t *testing.T) {
	testenv.RequireRoot(t)
	exe := testenv.BuildKillswitch(t)
	var damaged []int
	for _, p := range simulate.Profiles() {
		t.Run(p.Name, func(t *testing.T) {
			res, err := Run(context.Background(), Options{Profile: p.Name, Files: 60, Exe: exe,
				Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			if !res.Stopped {
				t.Fatalf("not stopped; %d files damaged", res.Damaged)
			}
			if res.Damaged > 10 {
				t.Errorf("%d files damaged before the stop, want at most 10", res.Damaged)
			}
			if res.Lost != 0 || res.LeftOver != 0 {
				t.Errorf("after restore: %d files lost, %d attacker files left\n%s", res.Lost, res.LeftOver, res.RestoreOutput)
			}
			damaged = append(damaged, res.Damaged)
			t.Logf("damaged %d, stopped %v after first damage, indicators %v", res.Damaged, res.TimeToStop, res.Indicators)
		})
	}
	sort.Ints(damaged)
	if len(damaged) > 0 && damaged[len(damaged)/2] > 3 {
		t.Errorf("median files damaged %d, want at most 3 (%v)", damaged[len(damaged)/2], damaged)
	}
}

// TestMissedAttackRestoredToPointInTime: with detection off, restore
// --before the attack still loses nothing.
func TestMissedAttackRestoredToPointInTime(t *testing.T) {
	testenv.RequireRoot(t)
	exe := testenv.BuildKillswitch(t)
	for _, prof := range simulate.Profiles() {
		p := prof.Name
		if p == "slow" {
			continue // the same writes as inplace, 1.5 s apart
		}
		t.Run(p, func(t *testing.T) {
			res, err := Run(context.Background(), Options{Profile: p, Files: 40, Exe: exe, NoDetect: true})
			if err != nil {
				t.Fatal(err)
			}
			if res.Stopped || res.Damaged != 40 {
				t.Fatalf("detection should be off and every file damaged: stopped=%v damaged=%d", res.Stopped, res.Damaged)
			}
			if res.Lost != 0 {
				t.Fatalf("%d files lost after restore --before\n%s", res.Lost, res.RestoreOutput)
			}
		})
	}
}

func TestSimulatorRefusesForeignFolders(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "precious.txt"), []byte("mine"), 0o644)
	p, _ := simulate.Find("inplace")
	if err := simulate.Run(p, dir, io.Discard); err == nil {
		t.Fatal("simulator ran on a folder it did not make")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "precious.txt")); string(b) != "mine" {
		t.Fatal("foreign file touched")
	}
	if _, err := simulate.MakeCorpus(dir, 5, 1); err == nil {
		t.Fatal("corpus made in a non-empty folder")
	}
}

// TestFileServerDrill: WannaCry's pattern from a workstation through a
// real Samba share. The guard stops the smbd serving the workstation,
// cuts the workstation off, keeps serving a colleague, and the restore
// brings every file back and removes the .WNCRY copies.
func TestFileServerDrill(t *testing.T) {
	testenv.RequireRoot(t)
	for _, tool := range []string{"smbd", "smbclient", "nft", "ip"} {
		testenv.RequireTool(t, tool)
	}
	exe := testenv.BuildKillswitch(t)
	res, err := Run(context.Background(), Options{Share: true, Files: 60, Exe: exe,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("damaged %d, attacker files %d, stopped %v after first damage, indicators %v, share %+v", res.Damaged, res.AttackerFiles, res.TimeToStop, res.Indicators, *res.Share)
	if !res.Stopped {
		t.Fatalf("not stopped; %d files damaged (%s)", res.Damaged, res.SimulatorError)
	}
	if res.Damaged > 10 {
		t.Errorf("%d files damaged before the stop, want at most 10", res.Damaged)
	}
	if s := res.Share; s.Client != s.Workstation || !s.CutOff || !s.WorkstationRefused || !s.ColleagueServed {
		t.Errorf("file server after the stop: %+v", *s)
	}
	if res.Lost != 0 || res.LeftOver != 0 {
		t.Errorf("after restore: %d files lost, %d attacker files left\n%s", res.Lost, res.LeftOver, res.RestoreOutput)
	}
	if !res.OK() {
		t.Error("the drill does not call itself a success")
	}
}
