package samba

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/killswitch-dev/killswitch/internal/netns"
)

// Configurations the scanner's lab runs, as smb.conf [global] lines.
const (
	SMB1     = "server min protocol = NT1\n"
	Default  = "" // Debian's defaults: SMB1 off since Samba 4.11
	Signing  = "server min protocol = NT1\nserver signing = mandatory\n"
	settling = 30 * time.Second
)

// Server is one smbd serving a set of addresses.
type Server struct {
	cmd   *exec.Cmd
	added []netip.Addr // put on lo by Start, taken off by Close
	Dir   string
}

// Share is a writable share that guests may use (files are written as
// root): a file server for the guard's tests.
type Share struct {
	Name, Path string
}

// AddLoopback puts each address on lo as a /32, which smbd needs to bind
// it (the kernel alone routes all of 127/8 to lo, but smbd only binds
// addresses it sees on an interface).
func AddLoopback(addrs []netip.Addr) error {
	var batch strings.Builder
	for _, a := range addrs {
		fmt.Fprintf(&batch, "addr replace %s/32 dev lo\n", a)
	}
	return ipBatch(batch.String())
}

// RemoveLoopback takes the addresses off lo again.
func RemoveLoopback(addrs []netip.Addr) error {
	var batch strings.Builder
	for _, a := range addrs {
		fmt.Fprintf(&batch, "addr del %s/32 dev lo\n", a)
	}
	return ipBatch(batch.String())
}

func ipBatch(cmds string) error {
	if cmds == "" {
		return nil
	}
	cmd := exec.Command("ip", "-force", "-batch", "-")
	cmd.Stdin = strings.NewReader(cmds)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ip -batch: %v: %s", err, out)
	}
	return nil
}

// Start runs smbd with the given [global] lines on addrs (ports 445
// and 139), with every state directory under dir, and waits until each
// address accepts connections. Addresses not yet on an interface are put
// on lo. Besides a read-only [share], it serves shares.
func Start(dir string, addrs []netip.Addr, global string) (*Server, error) {
	return start(dir, "", addrs, global, nil)
}

// StartFileServer runs smbd inside the network namespace netns (made by
// the caller), on addrs, serving shares: a file server whose clients come
// from elsewhere, and whose firewall is the namespace's, not the host's.
func StartFileServer(dir, netns string, addrs []netip.Addr, shares ...Share) (*Server, error) {
	return start(dir, netns, addrs, "", shares)
}

func start(dir, netns string, addrs []netip.Addr, global string, shares []Share) (*Server, error) {
	smbd, err := exec.LookPath("smbd")
	if err != nil {
		if smbd, err = exec.LookPath("/usr/sbin/smbd"); err != nil {
			return nil, errors.New("samba: smbd is not installed (apt-get install samba)")
		}
	}
	local := map[netip.Addr]bool{}
	if ifaddrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range ifaddrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				local[p.Addr()] = true
			}
		}
	}
	var added []netip.Addr
	for _, a := range addrs {
		if !local[a] && netns == "" {
			added = append(added, a)
		}
	}
	if err := AddLoopback(added); err != nil {
		return nil, err
	}
	var ifaces []string
	for _, a := range addrs {
		ifaces = append(ifaces, a.String())
	}
	for _, d := range []string{"lock", "state", "cache", "pid", "private", "ncalrpc", "share"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	if len(shares) > 0 {
		global += "map to guest = Bad User\n"
	}
	conf := fmt.Sprintf(`[global]
interfaces = %s
bind interfaces only = yes
smb ports = 445 139
disable netbios = yes
server role = standalone server
lock directory = %[2]s/lock
state directory = %[2]s/state
cache directory = %[2]s/cache
pid directory = %[2]s/pid
private dir = %[2]s/private
ncalrpc dir = %[2]s/ncalrpc
log file = %[2]s/log.smbd
log level = 1
load printers = no
printcap name = /dev/null
disable spoolss = yes
%[3]s
[share]
path = %[2]s/share
read only = yes
`, strings.Join(ifaces, " "), dir, global)
	for _, sh := range shares {
		conf += fmt.Sprintf("[%s]\npath = %s\nread only = no\nguest ok = yes\nforce user = root\n", sh.Name, sh.Path)
	}
	confPath := filepath.Join(dir, "smb.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	argv := []string{smbd, "--foreground", "--no-process-group", "-s", confPath}
	if netns != "" {
		argv = append([]string{"ip", "netns", "exec", netns}, argv...) // which then executes smbd itself
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	// Setpgid: Close stops smbd's children too; Pdeathsig: a test killed
	// mid-run does not leave smbd behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	log, err := os.Create(filepath.Join(dir, "smbd.out"))
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &Server{cmd: cmd, added: added, Dir: dir}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(settling)
	for _, a := range addrs {
		for {
			if s.listening(netns, netip.AddrPortFrom(a, 445)) {
				break
			}
			select {
			case err := <-exited:
				out, _ := os.ReadFile(filepath.Join(dir, "smbd.out"))
				return nil, fmt.Errorf("samba: smbd exited (%v): %s", err, out)
			case <-time.After(50 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				s.Close()
				return nil, fmt.Errorf("samba: smbd not listening on %s after %s", a, settling)
			}
		}
	}
	go func() { <-exited }()
	return s, nil
}

// listening reports whether smbd accepts connections on addr. Inside a
// namespace, whose addresses this process may not reach, its listening
// sockets are read from its own TCP table instead.
func (s *Server) listening(ns string, addr netip.AddrPort) bool {
	if ns == "" {
		c, err := net.DialTimeout("tcp", addr.String(), time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	conns, _ := netns.TCP("/proc", s.cmd.Process.Pid)
	for _, c := range conns {
		if c.State == netns.Listen && c.Local == addr {
			return true
		}
	}
	return false
}

// Close stops smbd and its children and takes the addresses it added off lo.
func (s *Server) Close() error {
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		for syscall.Kill(-s.cmd.Process.Pid, 0) == nil {
			time.Sleep(20 * time.Millisecond)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	}
	return RemoveLoopback(s.added)
}

// Running reports whether the main smbd process is still alive (and not
// stopped by a signal).
func (s *Server) Running() bool {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses: R, S, D are alive;
	// T (stopped), Z (zombie) and X (dead) are not serving.
	i := strings.LastIndexByte(string(st), ')')
	return i > 0 && i+2 < len(st) && strings.ContainsRune("RSDI", rune(st[i+2]))
}
