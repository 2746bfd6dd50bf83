package smblab

import (
	"fmt"
	"slices"

	"github.com/killswitch-dev/killswitch/internal/scan"
)

func optBool(b *bool) string {
	if b == nil {
		return "null"
	}
	return fmt.Sprint(*b)
}

func signing(s *scan.Signing) string {
	if s == nil {
		return ""
	}
	return string(*s)
}

// Check lists how r differs from what a correct scan reports.
func Check(r scan.Result, e Expect) []string {
	var out []string
	check := func(field, got, want string) {
		if got != want {
			out = append(out, fmt.Sprintf("%s = %q, want %q", field, got, want))
		}
	}
	check("smb1", optBool(r.SMB1), optBool(e.SMB1))
	check("ms17_010", string(r.MS17010), e.MS17)
	check("ms17_010_reason", string(r.MS17010Reason), e.MS17Reason)
	check("doublepulsar", optBool(r.DoublePulsar), optBool(e.DoublePulsar))
	check("doublepulsar_arch", r.DoublePulsarArch, e.Arch)
	if r.State == scan.PortOpen {
		check("dialects", fmt.Sprint(r.Dialects), fmt.Sprint(append([]string{}, e.Dialects...)))
		check("smb1_signing", signing(r.SMB1Signing), e.SMB1Signing)
		check("smb2_signing", signing(r.SMB2Signing), e.SMB2Signing)
	}
	return out
}

// Disagreement is a verdict where nmap answered and said otherwise.
type Disagreement struct {
	Kind    string // the lab host's kind
	Field   string
	Ours    string
	Nmap    string
	Correct string // what the lab host really is
}

func (d Disagreement) String() string {
	who := "neither"
	switch d.Correct {
	case d.Ours:
		who = "killswitch"
	case d.Nmap:
		who = "nmap"
	}
	return fmt.Sprintf("%s %s: killswitch %q, nmap %q, truth %q: %s is right", d.Kind, d.Field, d.Ours, d.Nmap, d.Correct, who)
}

// CompareNmap lists the fields where nmap gave an answer that differs from
// ours, with the truth from the lab's expectation.
func CompareNmap(kind string, r scan.Result, n NmapHost, e Expect) []Disagreement {
	var out []Disagreement
	add := func(field, ours, theirs, truth string) {
		if ours != theirs {
			out = append(out, Disagreement{kind, field, ours, theirs, truth})
		}
	}
	add("state", string(r.State), n.State, string(r.State))
	if len(n.Dialects) > 0 {
		want := fmt.Sprint(e.Dialects)
		if e.Dialects == nil {
			want = "[]"
		}
		add("dialects", fmt.Sprint(r.Dialects), fmt.Sprint(n.Dialects), want)
	}
	if n.SMB1Signing != "" {
		add("smb1_signing", signing(r.SMB1Signing), n.SMB1Signing, e.SMB1Signing)
	}
	// nmap has two answers for MS17-010: VULNERABLE, and NOT VULNERABLE for
	// every other outcome, including a check that could not run.
	nmapMS17 := map[string]string{"VULNERABLE": "vulnerable", "NOT VULNERABLE": "patched"}
	// Not applicable (no SMBv1) is what nmap means by NOT VULNERABLE there.
	if v, ok := nmapMS17[n.MS17]; ok && !(r.MS17010 == scan.MS17NotApplicable && v == "patched") {
		add("ms17_010", string(r.MS17010), v, e.MS17)
	}
	nmapDP := map[string]string{"VULNERABLE": "true", "NOT VULNERABLE": "false"}
	// No SMBv1, no implant to answer: nmap says false where we say null.
	if v, ok := nmapDP[n.DoublePulsar]; ok && !(r.DoublePulsarReason == scan.ReasonSMB1Disabled && v == "false") {
		add("doublepulsar", optBool(r.DoublePulsar), v, optBool(e.DoublePulsar))
	}
	return slices.Clip(out)
}
