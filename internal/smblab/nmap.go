package smblab

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"time"
)

// NmapScripts are nmap's scripts for what killswitch scan checks.
const NmapScripts = "smb-protocols,smb-security-mode,smb-vuln-ms17-010,smb-double-pulsar-backdoor"

// NmapTiming is nmap's fastest timing that keeps its answers: the insane
// template, every host in one group, many probes at once.
var NmapTiming = []string{"-T5", "--min-hostgroup", "1024", "--min-parallelism", "256"}

// NmapHost is what nmap's scripts said about one host on port 445. Empty
// strings mean the script gave no answer.
type NmapHost struct {
	Addr         netip.Addr
	State        string   // open, closed, filtered
	Dialects     []string // in killswitch's spelling: "NT LM 0.12", "2.0.2", ...
	SMB1Signing  string   // disabled, enabled, required
	MS17         string   // VULNERABLE, NOT VULNERABLE
	DoublePulsar string   // VULNERABLE, NOT VULNERABLE
}

// RunNmap scans addrs on port 445 with NmapScripts and returns each host's
// answers and nmap's wall time.
func RunNmap(ctx context.Context, addrs []netip.Addr, port int) (map[netip.Addr]NmapHost, time.Duration, error) {
	var list strings.Builder
	for _, a := range addrs {
		list.WriteString(a.String() + "\n")
	}
	args := append([]string{"-n", "-Pn", "-p", fmt.Sprint(port), "--script", NmapScripts, "--script-args", "vulns.showall",
		"-oX", "-", "-iL", "-"}, NmapTiming...)
	cmd := exec.CommandContext(ctx, "nmap", args...)
	cmd.Stdin = strings.NewReader(list.String())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	out, err := cmd.Output()
	took := time.Since(start)
	if err != nil {
		return nil, took, fmt.Errorf("nmap: %v: %s", err, stderr.String())
	}
	hosts, err := ParseNmapXML(out)
	return hosts, took, err
}

type nmapElem struct {
	Key   string `xml:"key,attr"`
	Value string `xml:",chardata"`
}

type nmapTable struct {
	Key    string      `xml:"key,attr"`
	Elems  []nmapElem  `xml:"elem"`
	Tables []nmapTable `xml:"table"`
}

type nmapXML struct {
	Hosts []struct {
		Address []struct {
			Addr string `xml:"addr,attr"`
		} `xml:"address"`
		Ports []struct {
			State struct {
				State string `xml:"state,attr"`
			} `xml:"state"`
		} `xml:"ports>port"`
		Scripts []struct {
			ID string `xml:"id,attr"`
			nmapTable
		} `xml:"hostscript>script"`
	} `xml:"host"`
}

// ParseNmapXML reads nmap's -oX output.
func ParseNmapXML(b []byte) (map[netip.Addr]NmapHost, error) {
	var doc nmapXML
	if err := xml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("nmap XML: %w", err)
	}
	out := map[netip.Addr]NmapHost{}
	for _, h := range doc.Hosts {
		if len(h.Address) == 0 {
			continue
		}
		a, err := netip.ParseAddr(h.Address[0].Addr)
		if err != nil {
			return nil, err
		}
		n := NmapHost{Addr: a}
		if len(h.Ports) > 0 {
			n.State = h.Ports[0].State.State
		}
		for _, s := range h.Scripts {
			switch s.ID {
			case "smb-protocols":
				for _, t := range s.Tables {
					if t.Key != "dialects" {
						continue
					}
					for _, e := range t.Elems {
						n.Dialects = append(n.Dialects, nmapDialect(e.Value))
					}
				}
			case "smb-security-mode":
				for _, e := range s.Elems {
					if e.Key == "message_signing" {
						n.SMB1Signing = strings.Replace(strings.Fields(e.Value + " ?")[0], "supported", "enabled", 1)
					}
				}
			case "smb-vuln-ms17-010":
				n.MS17 = vulnState(s.nmapTable)
			case "smb-double-pulsar-backdoor":
				n.DoublePulsar = vulnState(s.nmapTable)
			}
		}
		out[a] = n
	}
	return out, nil
}

func nmapDialect(s string) string {
	switch {
	case strings.HasPrefix(s, "NT LM 0.12"):
		return "NT LM 0.12"
	case s == "202", s == "2:0:2", s == "2.02":
		return "2.0.2"
	case s == "210", s == "2:1:0", s == "2.10":
		return "2.1"
	case s == "300", s == "3:0:0", s == "3.00":
		return "3.0"
	case s == "302", s == "3:0:2", s == "3.02":
		return "3.0.2"
	case s == "311", s == "3:1:1", s == "3.11":
		return "3.1.1"
	}
	return s
}

func vulnState(t nmapTable) string {
	for _, e := range t.Elems {
		if e.Key == "state" {
			return e.Value
		}
	}
	for _, sub := range t.Tables {
		if s := vulnState(sub); s != "" {
			return s
		}
	}
	return ""
}
