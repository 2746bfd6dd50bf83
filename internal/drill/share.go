package drill

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/killswitch-dev/killswitch/internal/netns"
	"github.com/killswitch-dev/killswitch/internal/samba"
	"github.com/killswitch-dev/killswitch/internal/simulate"
)

// ErrShareTools means the file-server drill lacks a program it needs.
var ErrShareTools = errors.New("drill: the file-server drill needs smbd, smbclient, nft and ip (apt-get install samba smbclient nftables iproute2)")

// shareLab is the file-server drill's network: a Samba server, the
// workstation the ransomware runs on and a colleague's machine, each in a
// network namespace of its own (198.18.0.0/15, the range set aside for
// such tests), so that nothing on the host's own network changes.
type shareLab struct {
	server, workstation, colleague *netns.NS
	serverForWS, serverForCol      netip.Addr
	wsAddr                         netip.Addr
	smbd                           *samba.Server
	smbclientPath                  string
}

func newShareLab() (*shareLab, error) {
	for _, tool := range []string{"smbd", "nft", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			if _, err := exec.LookPath("/usr/sbin/" + tool); err != nil {
				return nil, fmt.Errorf("%w: %s is missing", ErrShareTools, tool)
			}
		}
	}
	smbclient, err := exec.LookPath("smbclient")
	if err != nil {
		return nil, fmt.Errorf("%w: smbclient is missing", ErrShareTools)
	}
	l := &shareLab{smbclientPath: smbclient}
	for _, ns := range []**netns.NS{&l.server, &l.workstation, &l.colleague} {
		if *ns, err = netns.New("ksd-"); err != nil {
			l.close()
			return nil, err
		}
	}
	if l.wsAddr, l.serverForWS, err = netns.Link(l.workstation, l.server, netip.MustParsePrefix("198.18.1.0/24")); err != nil {
		l.close()
		return nil, err
	}
	if _, l.serverForCol, err = netns.Link(l.colleague, l.server, netip.MustParsePrefix("198.18.2.0/24")); err != nil {
		l.close()
		return nil, err
	}
	return l, nil
}

// serve starts smbd in the server's namespace, sharing corpus as "corpus".
func (l *shareLab) serve(dir, corpus string) error {
	var err error
	l.smbd, err = samba.StartFileServer(dir, l.server.Name, []netip.Addr{l.serverForWS, l.serverForCol}, samba.Share{Name: "corpus", Path: corpus})
	return err
}

// attack is WannaCry through the share, from the workstation: for each
// file, an encrypted copy (.WNCRY) is written next to it and the original
// deleted, all in one SMB session. The ciphertext is made on the
// workstation side (random bytes of the original's size, which is what
// ciphertext looks like); nothing outside the corpus is touched.
func (l *shareLab) attack(ctx context.Context, corpus, work string, m simulate.Manifest) (string, error) {
	if err := os.MkdirAll(work, 0o700); err != nil {
		return "", err
	}
	var cmds []string
	for i, rel := range m.Sorted() {
		st, err := os.Stat(filepath.Join(corpus, rel))
		if err != nil {
			return "", err
		}
		b := make([]byte, st.Size())
		rand.Read(b)
		local := filepath.Join(work, fmt.Sprintf("%d.enc", i))
		if err := os.WriteFile(local, b, 0o600); err != nil {
			return "", err
		}
		remote := strings.ReplaceAll(rel, "/", `\`)
		cmds = append(cmds, fmt.Sprintf(`put "%s" "%s.WNCRY"`, local, remote), fmt.Sprintf(`del "%s"`, remote))
	}
	out, err := l.smbclient(ctx, l.workstation, l.serverForWS, strings.Join(cmds, "; "))
	return out, err
}

// reaches reports whether a machine of the lab can list the share.
func (l *shareLab) reaches(ctx context.Context, from *netns.NS, server netip.Addr) bool {
	out, err := l.smbclient(ctx, from, server, "ls")
	return err == nil && strings.Contains(out, simulate.Marker)
}

func (l *shareLab) smbclient(ctx context.Context, from *netns.NS, server netip.Addr, commands string) (string, error) {
	// -t: a client cut off gets no answer at all, not a refusal.
	argv := from.Argv("timeout", "60", l.smbclientPath, "//"+server.String()+"/corpus", "-N", "-t", "5", "-c", commands)
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	return string(out), err
}

func (l *shareLab) close() {
	if l.smbd != nil {
		l.smbd.Close()
	}
	for _, ns := range []*netns.NS{l.server, l.workstation, l.colleague} {
		if ns != nil {
			ns.Close()
		}
	}
}
