package guard

import (
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/killswitch-dev/killswitch/internal/cutoff"
	"github.com/killswitch-dev/killswitch/internal/restore"
	"github.com/killswitch-dev/killswitch/internal/samba"
	"github.com/killswitch-dev/killswitch/internal/testenv"
	"github.com/killswitch-dev/killswitch/internal/vault"
)

// TestAttackThroughFileServer: ransomware on a workstation encrypts a
// share on this host. The writer the guard sees is smbd. The guard must
// stop the smbd process serving that workstation, cut the workstation off
// from the file-sharing ports, and leave the server running for everyone
// else.
//
// smbd runs in a network namespace of the test's own, reached over two
// veth pairs: the workstation is 10.204.0.1, a colleague 10.205.0.1. The
// cut-off rules go into that namespace's firewall, never the host's.
func TestAttackThroughFileServer(t *testing.T) {
	testenv.RequireRoot(t)
	smbclient := testenv.RequireTool(t, "smbclient")
	testenv.RequireTool(t, "nft")
	ns := testenv.Netns(t, 204, 205)
	server := []netip.Addr{netip.MustParseAddr("10.204.0.2"), netip.MustParseAddr("10.205.0.2")}
	workstation, colleague := "10.204.0.1", "10.205.0.1"
	nftArgv := []string{"ip", "netns", "exec", ns, "nft"}

	dir, incidents, stopGuard := armed(t, func(c *Config) { c.NFT = nftArgv })
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			stopGuard()
		}
	}
	defer stop()
	for i := range 12 {
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("ward-%02d.txt", i)), []byte(original(i)), 0o644)
	}
	smb, err := samba.StartFileServer(t.TempDir(), ns, server, samba.Share{Name: "wards", Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer smb.Close()

	// The workstation also holds a second, idle session (a mapped drive,
	// say): cutting it off must end that one too.
	idle := exec.Command(smbclient, "//"+server[0].String()+"/wards", "-N")
	idleIn, _ := idle.StdinPipe() // open: the session waits for commands
	if err := idle.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { idleIn.Close(); idle.Process.Kill(); idle.Wait() }()
	smbd, _ := exec.LookPath("smbd")
	if smbd == "" {
		smbd = "/usr/sbin/smbd"
	}
	testenv.WaitFor(t, "the idle session", func() bool {
		return len(cutoff.Serving("/proc", smbd, netip.MustParseAddr(workstation))) == 1
	})

	// The workstation overwrites every file with random bytes, one SMB
	// session, as WannaCry did to the shares it could reach.
	local := t.TempDir()
	var cmds []string
	for i := range 12 {
		p := filepath.Join(local, fmt.Sprintf("enc-%02d", i))
		b := make([]byte, 4000)
		rand.Read(b)
		os.WriteFile(p, b, 0o644)
		cmds = append(cmds, fmt.Sprintf("put %s ward-%02d.txt", p, i))
	}
	attack := exec.Command("timeout", "60", smbclient, "//"+server[0].String()+"/wards", "-N", "-c", strings.Join(cmds, "; "))
	out, _ := attack.CombinedOutput()
	t.Logf("the workstation's smbclient said:\n%s", out)

	inc := waitIncident(t, incidents)
	t.Logf("incident %s: actor %s (pid %d), client %s cut off %v, damaged %d %v", inc.ID, inc.Actor.Executable, inc.Actor.PID, inc.Client, inc.ClientCutOff, len(inc.Damaged), inc.Indicators)
	if filepath.Base(inc.Actor.Executable) != "smbd" || !inc.Actor.Server {
		t.Errorf("the actor is %s (server %v), want the smbd serving the workstation", inc.Actor.Executable, inc.Actor.Server)
	}
	if inc.Client != workstation || !inc.ClientCutOff || inc.CutOffError != "" {
		t.Errorf("client %q cut off %v (%s), want %s cut off", inc.Client, inc.ClientCutOff, inc.CutOffError, workstation)
	}
	if len(inc.Damaged) > 6 {
		t.Errorf("%d files damaged before the stop", len(inc.Damaged))
	}
	if inc.ExecBlocked || inc.ExeSHA256 != "" {
		t.Errorf("smbd's binary was offered for blocking (exec blocked %v, sha256 %q)", inc.ExecBlocked, inc.ExeSHA256)
	}

	// The server still runs, and serves the colleague.
	if !smb.Running() {
		t.Fatal("smbd was stopped: the server is down for everyone")
	}
	ls := exec.Command("timeout", "30", smbclient, "//"+server[1].String()+"/wards", "-N", "-c", "ls")
	if out, err := ls.CombinedOutput(); err != nil || !strings.Contains(string(out), "ward-11.txt") {
		t.Errorf("the colleague at %s cannot use the share: %v\n%s", colleague, err, out)
	}
	// No smbd process serves the workstation any more, idle session included.
	testenv.WaitFor(t, "the idle session to end", func() bool {
		return len(cutoff.Serving("/proc", smbd, netip.MustParseAddr(workstation))) == 0
	})
	// The workstation cannot come back.
	if c, err := net.DialTimeout("tcp", server[0].String()+":445", 2*time.Second); err == nil {
		c.Close()
		t.Error("the workstation can still connect to the file server")
	}
	fw := cutoff.Firewall{NFT: nftArgv, State: filepath.Join(filepath.Dir(dir), "cutoff.json")}
	if l, err := fw.List(); err != nil || len(l) != 1 || l[0].Address != workstation || l[0].Incident != inc.ID {
		t.Errorf("cut off = %+v, %v; want %s by %s", l, err, workstation, inc.ID)
	}
	// Released, it connects again.
	if err := fw.Release(t.Context(), netip.MustParseAddr(workstation)); err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", server[0].String()+":445", 5*time.Second)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	c.Close()

	// Every file the workstation reached comes back from the vault.
	stop()
	v, err := vault.Open(filepath.Join(filepath.Dir(dir), "vault"))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	acts, err := restore.Incident(v, inc, []string{dir}, restore.Options{})
	if err != nil {
		t.Fatalf("restore: %v (%+v)", err, acts)
	}
	for i := range 12 {
		got, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("ward-%02d.txt", i)))
		if string(got) != original(i) {
			t.Errorf("ward-%02d.txt is not back as it was (%d bytes)", i, len(got))
		}
	}
}

func original(i int) string {
	return strings.Repeat(fmt.Sprintf("bed %d: patient notes, medication, allergies\n", i), 100)
}

func waitIncident(t *testing.T, incidents chan vault.Incident) vault.Incident {
	t.Helper()
	select {
	case inc := <-incidents:
		return inc
	case <-time.After(30 * time.Second):
		t.Fatal("no incident")
		return vault.Incident{}
	}
}

// TestCutOffKeptAcrossRestart: a guard starting with a list of clients
// cut off (from before a reboot, which emptied nftables) enforces it again.
func TestCutOffKeptAcrossRestart(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "nft")
	ns := testenv.Netns(t, 207)
	nftArgv := []string{"ip", "netns", "exec", ns, "nft"}
	state := filepath.Join(t.TempDir(), "cutoff.json")
	os.WriteFile(state, []byte(`{"version":1,"cut_off":[{"address":"10.207.0.1","since":"2026-11-26T03:40:45Z","incident":"ks-1"}]}`), 0o600)
	_, _, stop := armed(t, func(c *Config) { c.NFT, c.CutOffState = nftArgv, state })
	defer stop()
	out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "set", "inet", "killswitch_cutoff", "clients4").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "10.207.0.1") {
		t.Fatalf("after the guard started, the cut-off set is: %v\n%s", err, out)
	}
}

// TestFileServerManyClientsEachEncryptOne: four people each encrypt one
// file of their own on the share. Each is a person encrypting a file, not
// an attack, and the main smbd, which serves them all, must not add them
// up into one (that would stop the server for everyone).
func TestFileServerManyClientsEachEncryptOne(t *testing.T) {
	testenv.RequireRoot(t)
	smbclient := testenv.RequireTool(t, "smbclient")
	nets := []byte{210, 211, 212, 213}
	ns := testenv.Netns(t, nets...)
	var server []netip.Addr
	for _, b := range nets {
		server = append(server, netip.AddrFrom4([4]byte{10, b, 0, 2}))
	}
	dir, incidents, stop := armed(t)
	defer stop()
	for i := range nets {
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("own-%d.txt", i)), []byte(original(i)), 0o644)
	}
	smb, err := samba.StartFileServer(t.TempDir(), ns, server, samba.Share{Name: "wards", Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer smb.Close()
	local := t.TempDir()
	for i, addr := range server {
		enc := filepath.Join(local, fmt.Sprintf("enc-%d", i))
		b := make([]byte, 4000)
		rand.Read(b)
		os.WriteFile(enc, b, 0o644)
		put := exec.Command("timeout", "60", smbclient, "//"+addr.String()+"/wards", "-N", "-c", fmt.Sprintf("put %s own-%d.txt", enc, i))
		if out, err := put.CombinedOutput(); err != nil {
			t.Fatalf("client %d: %v\n%s", i, err, out)
		}
	}
	select {
	case inc := <-incidents:
		t.Fatalf("stopped %s (pid %d) for %d people each encrypting one file: %v", inc.Actor.Executable, inc.Actor.PID, len(nets), inc.Indicators)
	case <-time.After(time.Second):
	}
	if !smb.Running() {
		t.Fatal("smbd is not running")
	}
}

// TestFakeFileServerName: ransomware that runs each file's encryption in
// a child it calls smbd must not hide behind the file-server rule (which
// stops scoring at a server's process): a process is a file server's only
// if it holds a connection accepted on a file-sharing port.
func TestFakeFileServerName(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "openssl")
	dir, incidents, stop := armed(t)
	defer stop()
	for i := range 12 {
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("ward-%02d.txt", i)), []byte(original(i)), 0o644)
	}
	fake := filepath.Join(t.TempDir(), "smbd")
	sh, _ := os.ReadFile("/bin/sh")
	if err := os.WriteFile(fake, sh, 0o755); err != nil {
		t.Fatal(err)
	}
	script := `for f in *.txt; do "$FAKE" -c "openssl enc -aes-256-cbc -pbkdf2 -pass pass:x -in '$f' -out '$f.tmp' && mv '$f.tmp' '$f'"; done`
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir, cmd.Env = dir, append(os.Environ(), "FAKE="+fake)
	cmd.Run()
	inc := waitIncident(t, incidents)
	t.Logf("incident %s: actor %s (server %v), %d damaged", inc.ID, inc.Actor.Executable, inc.Actor.Server, len(inc.Damaged))
	if inc.Actor.Server || inc.Client != "" {
		t.Errorf("a process named smbd with no client was taken for a file server: %+v", inc.Actor)
	}
}
