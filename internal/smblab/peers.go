package smblab

import (
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/killswitch-dev/killswitch/internal/smb"
)

// PcapDir finds ../shared/data/pcaps beside the project root.
func PcapDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, "..", "shared", "data", "pcaps")
			if _, err := os.Stat(p); err != nil {
				return "", err
			}
			return p, nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", errors.New("smblab: project root (go.mod) not found")
		}
		dir = up
	}
}

// Expect is what a correct scan reports for a peer.
type Expect struct {
	SMB1         *bool
	Dialects     []string
	SMB1Signing  string // "" when unknown
	SMB2Signing  string
	MS17         string
	MS17Reason   string
	DoublePulsar *bool
	Arch         string
}

func b(v bool) *bool { return &v }

// Recorded is one Windows host replayed from the captures.
type Recorded struct {
	Name    string
	Implant bool
	Sources []Source
	Expect  Expect
}

// RecordedHosts lists the Windows hosts the captures let us replay.
func RecordedHosts(dir string) []Recorded {
	id2tScan := filepath.Join(dir, "ID2T_Win7_eternalblue_scan.pcap")
	id2tExploit := filepath.Join(dir, "ID2T_Win7_eternalblue_exploit.pcap")
	wannacry := filepath.Join(dir, "wannacry.pcap")
	smb1Only := []string{smb.DialectNTLM}
	return []Recorded{
		{"win7-sp1-unpatched", false, []Source{{id2tScan, "192.168.189.140"}},
			Expect{b(true), smb1Only, "disabled", "", "vulnerable", "insuff-server-resources", b(false), ""}},
		{"win7-sp1-doublepulsar-x64", true, []Source{{id2tExploit, "192.168.189.140"}, {id2tScan, "192.168.189.140"}},
			Expect{b(true), smb1Only, "disabled", "", "vulnerable", "insuff-server-resources", b(true), "x64"}},
		{"win7-ent-wannacry-doublepulsar-x64", true, []Source{{wannacry, "192.168.116.138"}},
			Expect{b(true), smb1Only, "disabled", "", "vulnerable", "insuff-server-resources", b(true), "x64"}},
		{"win7-ent-wannacry-doublepulsar-x86", true, []Source{{wannacry, "192.168.116.172"}},
			Expect{b(true), smb1Only, "disabled", "", "vulnerable", "insuff-server-resources", b(true), "x86"}},
		{"server2012r2-unpatched", false, []Source{{wannacry, "192.168.116.143"}},
			Expect{b(true), smb1Only, "required", "", "vulnerable", "insuff-server-resources", b(false), ""}},
		{"anonymous-refused", false, []Source{{wannacry, "192.168.116.150"}},
			Expect{b(true), smb1Only, "disabled", "", "unknown", "anonymous-refused", nil, ""}},
	}
}

// Hostile is a server that misbehaves in one way.
type Hostile struct {
	Name   string
	Peer   Peer
	Expect Expect // what the scan must say: never a crash, never a hang
}

// HostileHosts lists the misbehaving servers. slow bounds how long the
// slow ones keep a connection (keep it above the scan's time-out).
func HostileHosts(slow time.Duration) []Hostile {
	unknown := Expect{SMB1: nil, MS17: "unknown", MS17Reason: "smb1-unknown"}
	off := Expect{SMB1: b(false), MS17: "not-applicable", MS17Reason: "smb1-disabled"}
	return []Hostile{
		{"garbage", PeerFunc(func(c net.Conn) {
			junk := make([]byte, 512)
			rand.Read(junk)
			junk[0] = 0 // a plausible NetBIOS type, then nonsense
			c.Write(junk)
			hold(c, slow)
		}), unknown},
		{"truncated-frame", replyThen(func(c net.Conn) {
			c.Write([]byte{0, 0, 0, 100, 0xff, 'S', 'M', 'B', 0x72})
		}), unknown},
		{"giant-length", replyThen(func(c net.Conn) {
			c.Write([]byte{0, 0xff, 0xff, 0xff, 0xff, 'S', 'M', 'B'})
			c.Write(make([]byte, 4096))
			hold(c, slow)
		}), unknown},
		{"slowloris", replyThen(func(c net.Conn) {
			frame := smb.Frame(negotiateReply(1, 0x03))
			for _, x := range frame {
				if _, err := c.Write([]byte{x}); err != nil {
					return
				}
				time.Sleep(slow / 8)
			}
		}), Expect{SMB1: nil, MS17: "unknown", MS17Reason: "smb1-unknown"}},
		{"reset-mid-reply", replyThen(func(c net.Conn) {
			frame := smb.Frame(negotiateReply(1, 0x03))
			c.Write(frame[:20])
			time.Sleep(10 * time.Millisecond)
			reset(c)
		}), unknown},
		{"wrong-mid", replyThen(func(c net.Conn) {
			c.Write(smb.Frame(negotiateReply(2, 0x03)))
			hold(c, slow)
		}), unknown},
		{"silent", PeerFunc(func(c net.Conn) { hold(c, slow) }), unknown},
		{"reset-at-once", PeerFunc(func(c net.Conn) { reset(c) }), off},
		{"smb2-answer-to-smb1", replyThen(func(c net.Conn) {
			rep := make([]byte, 64+9)
			copy(rep, "\xfeSMB")
			rep[4] = 64
			c.Write(smb.Frame(rep))
			hold(c, slow)
		}), off},
	}
}

// replyThen reads the client's first frame (after a NetBIOS session on
// 139), then misbehaves.
func replyThen(misbehave func(c net.Conn)) Peer {
	return PeerFunc(func(c net.Conn) {
		s, err := newSession(c)
		if err != nil {
			return
		}
		if _, err := s.read(); err != nil {
			return
		}
		misbehave(c)
	})
}

// negotiateReply is a well-formed NT LM 0.12 NEGOTIATE reply.
func negotiateReply(mid uint16, secMode byte) []byte {
	m := make([]byte, 32, 32+1+34+2)
	copy(m, "\xffSMB")
	m[4] = smb.CmdNegotiate
	m[9] = 0x98
	m[10], m[11] = 0x01, 0xC8
	m[30], m[31] = byte(mid), byte(mid>>8)
	w := make([]byte, 34)
	w[2] = secMode
	w[3] = 50 // max mpx
	m = append(m, 17)
	m = append(m, w...)
	return append(m, 0, 0)
}

// hold keeps c open for d, or until the client or the server closes it.
func hold(c net.Conn, d time.Duration) {
	c.SetReadDeadline(time.Now().Add(d))
	io.Copy(io.Discard, c)
}
