package scan

import (
	"fmt"
	"net/netip"
	"time"
)

// PortState is what a TCP connect found.
type PortState string

const (
	PortOpen     PortState = "open"
	PortClosed   PortState = "closed"   // refused: nothing listens
	PortFiltered PortState = "filtered" // no answer or unreachable
)

// Signing is how an SMB server treats message signing.
type Signing string

const (
	SigningDisabled Signing = "disabled"
	SigningEnabled  Signing = "enabled"  // offered, not required: relay attacks work
	SigningRequired Signing = "required" // the safe setting
)

func (s Signing) rank() int {
	switch s {
	case SigningDisabled:
		return 1
	case SigningEnabled:
		return 2
	case SigningRequired:
		return 3
	}
	return 0
}

// MS17 is the verdict of the MS17-010 check.
type MS17 string

const (
	MS17Vulnerable    MS17 = "vulnerable"
	MS17Patched       MS17 = "patched"
	MS17Unknown       MS17 = "unknown"        // the check could not run to the end: see the reason
	MS17NotApplicable MS17 = "not-applicable" // no SMBv1, or nothing listens: EternalBlue has no way in
)

// Reason says why a verdict is what it is. The set is fixed so that
// scripts can match on it.
type Reason string

const (
	ReasonInsuffResources   Reason = "insuff-server-resources" // 0xC0000205: unpatched
	ReasonInvalidHandle     Reason = "invalid-handle"          // 0xC0000008: patched
	ReasonAccessDenied      Reason = "access-denied"           // 0xC0000022 on the transaction: patched
	ReasonAnonymousRefused  Reason = "anonymous-refused"       // no null session: the check needs one
	ReasonIPCRefused        Reason = "ipc-refused"             // IPC$ tree connect refused
	ReasonUnexpectedStatus  Reason = "unexpected-status"       // an NT status that proves nothing
	ReasonNoReply           Reason = "no-reply"                // time-out waiting for an answer
	ReasonConnectionClosed  Reason = "connection-closed"       // closed before a complete answer
	ReasonConnectionReset   Reason = "connection-reset"        // reset before a complete answer
	ReasonProtocolError     Reason = "protocol-error"          // an answer that is not valid SMB for the request
	ReasonNetBIOSRefused    Reason = "netbios-refused"         // port 139 refused the NetBIOS session
	ReasonSMB1Disabled      Reason = "smb1-disabled"
	ReasonSMB1Unknown       Reason = "smb1-unknown" // SMBv1 could not be determined, so neither can what needs it
	ReasonPortClosed        Reason = "port-closed"
	ReasonPortFiltered      Reason = "port-filtered"
	ReasonSMB1Accepted      Reason = "nt-lm-0.12-accepted"   // SMBv1 on
	ReasonSMB1NoDialect     Reason = "no-dialect-accepted"   // the server refused NT LM 0.12
	ReasonSMB1RefusedSilent Reason = "closed-without-answer" // how Windows refuses SMBv1
	ReasonSMB2Reply         Reason = "smb2-reply"            // answered an SMB1 negotiate in SMB2
	ReasonImplantAnswered   Reason = "implant-answered"      // MID + 16
	ReasonNoImplant         Reason = "mid-unchanged"
	ReasonInterrupted       Reason = "interrupted"
)

// Result is everything one host and port told the scan. Fields that could
// not be determined are nil (JSON null), with the reason beside them.
type Result struct {
	IP   netip.Addr `json:"ip"`
	Name string     `json:"hostname,omitempty"`
	Port int        `json:"port"`

	State PortState `json:"state"`

	SMB1       *bool  `json:"smb1"`
	SMB1Reason Reason `json:"smb1_reason,omitempty"`
	// Dialects lists what the server accepts: "NT LM 0.12" (SMBv1), "2.0.2" ... "3.1.1".
	Dialects []string `json:"dialects"`

	// Signing is the weakest signing the server offers over any dialect
	// it accepts; SMB1Signing and SMB2Signing give each protocol's own.
	Signing     *Signing `json:"signing"`
	SMB1Signing *Signing `json:"smb1_signing"`
	SMB2Signing *Signing `json:"smb2_signing"`

	MS17010       MS17   `json:"ms17_010"`
	MS17010Reason Reason `json:"ms17_010_reason"`
	// MS17010Status is the NT status that decided the check, e.g.
	// "0xC0000205 STATUS_INSUFF_SERVER_RESOURCES".
	MS17010Status string `json:"ms17_010_status,omitempty"`

	DoublePulsar       *bool  `json:"doublepulsar"`
	DoublePulsarReason Reason `json:"doublepulsar_reason,omitempty"`
	DoublePulsarArch   string `json:"doublepulsar_arch,omitempty"` // x86 or x64
	DoublePulsarKey    string `json:"doublepulsar_key,omitempty"`  // XOR key, for incident responders

	OS string `json:"os,omitempty"` // as the SMB1 session setup reply names it

	// Detail holds the low-level error behind an unknown verdict, for
	// whoever debugs the network; scripts should match reasons instead.
	Detail string `json:"detail,omitempty"`

	Time     time.Time `json:"@timestamp"`
	Duration float64   `json:"duration_ms"`
}

// Severity orders results worst first.
type Severity int

const (
	SevNone     Severity = iota // closed or filtered
	SevInfo                     // open, nothing wrong found
	SevLow                      // signing not required
	SevMedium                   // SMBv1 on, patched or unknown
	SevHigh                     // MS17-010 missing
	SevCritical                 // DoublePulsar answers
)

func (s Severity) String() string {
	return [...]string{"none", "info", "low", "medium", "high", "critical"}[s]
}

// Severity rates the result.
func (r *Result) Severity() Severity {
	switch {
	case r.DoublePulsar != nil && *r.DoublePulsar:
		return SevCritical
	case r.MS17010 == MS17Vulnerable:
		return SevHigh
	case r.SMB1 != nil && *r.SMB1, r.State == PortOpen && r.SMB1 == nil:
		return SevMedium
	case r.Signing != nil && *r.Signing != SigningRequired:
		return SevLow
	case r.State == PortOpen:
		return SevInfo
	}
	return SevNone
}

// Vulnerable reports whether the worm can get in or is already in.
func (r *Result) Vulnerable() bool { return r.Severity() >= SevHigh }

// Advice says what to do about the result, worst problem first.
func (r *Result) Advice() string {
	switch {
	case r.DoublePulsar != nil && *r.DoublePulsar:
		return fmt.Sprintf("ISOLATE NOW: DoublePulsar implant (%s) answers; the host is compromised. Reimage it, apply MS17-010, disable SMBv1", r.DoublePulsarArch)
	case r.MS17010 == MS17Vulnerable:
		return "apply MS17-010 (or isolate until patched) and disable SMBv1"
	case r.SMB1 != nil && *r.SMB1 && r.MS17010 == MS17Unknown:
		return fmt.Sprintf("disable SMBv1; MS17-010 could not be checked (%s): check the patch level on the host", r.MS17010Reason)
	case r.SMB1 != nil && *r.SMB1:
		return "disable SMBv1 (patched, but SMBv1 is what the worm used)"
	case r.State == PortOpen && r.SMB1 == nil:
		return fmt.Sprintf("could not tell whether SMBv1 is on (%s): check the host", r.SMB1Reason)
	case r.Signing != nil && *r.Signing != SigningRequired:
		return "require SMB signing (relay attacks)"
	case r.State == PortOpen:
		return "nothing to do"
	}
	return ""
}

func weakest(a, b *Signing) *Signing {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	case a.rank() <= b.rank():
		return a
	}
	return b
}

func ptr[T any](v T) *T { return &v }
