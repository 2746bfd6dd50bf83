package scan

import (
	"cmp"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Formats lists the output formats.
var Formats = []string{"table", "json", "csv", "sarif"}

// SortWorstFirst orders results by severity, then address and port.
func SortWorstFirst(rs []Result) {
	slices.SortStableFunc(rs, func(a, b Result) int {
		if c := cmp.Compare(b.Severity(), a.Severity()); c != 0 {
			return c
		}
		if c := a.IP.Compare(b.IP); c != 0 {
			return c
		}
		return cmp.Compare(a.Port, b.Port)
	})
}

func boolCell(b *bool, yes, no string) string {
	switch {
	case b == nil:
		return "?"
	case *b:
		return yes
	}
	return no
}

func signingCell(s *Signing) string {
	if s == nil {
		return "?"
	}
	return string(*s)
}

func ms17Cell(r *Result) string {
	switch r.MS17010 {
	case MS17Vulnerable, MS17Patched:
		return string(r.MS17010)
	case MS17NotApplicable:
		return "n/a"
	}
	return "unknown (" + string(r.MS17010Reason) + ")"
}

func pulsarCell(r *Result) string {
	if r.DoublePulsar != nil && *r.DoublePulsar {
		return "IMPLANT " + r.DoublePulsarArch
	}
	if r.DoublePulsar == nil && r.DoublePulsarReason == ReasonSMB1Disabled {
		return "n/a"
	}
	return boolCell(r.DoublePulsar, "IMPLANT", "no")
}

// WriteTable writes a readable table, worst first, of the ports that
// answered; closed and filtered ports are counted, not listed, unless all.
func WriteTable(w io.Writer, rs []Result, all bool) error {
	SortWorstFirst(rs)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEVERITY\tHOST\tPORT\tSMBv1\tDIALECTS\tSIGNING\tMS17-010\tDOUBLEPULSAR\tWHAT TO DO")
	closed, filtered := 0, 0
	for i := range rs {
		r := &rs[i]
		if r.State != PortOpen && !all {
			if r.State == PortClosed {
				closed++
			} else {
				filtered++
			}
			continue
		}
		host := r.IP.String()
		if r.Name != "" {
			host += " (" + r.Name + ")"
		}
		dialects := strings.Join(r.Dialects, " ")
		if r.State != PortOpen {
			dialects = string(r.State)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", strings.ToUpper(r.Severity().String()), host, r.Port,
			boolCell(r.SMB1, "ON", "off"), cmp.Or(dialects, "-"), signingCell(r.Signing), ms17Cell(r), pulsarCell(r), r.Advice())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if closed+filtered > 0 {
		_, err := fmt.Fprintf(w, "(%d closed and %d filtered ports not listed; --all lists them)\n", closed, filtered)
		return err
	}
	return nil
}

// JSONWriter writes one JSON object per result (JSON Lines).
type JSONWriter struct{ enc *json.Encoder }

func NewJSONWriter(w io.Writer) *JSONWriter { return &JSONWriter{json.NewEncoder(w)} }

func (j *JSONWriter) Write(r Result) error { return j.enc.Encode(r) }

var csvHeader = []string{"ip", "hostname", "port", "state", "severity", "smb1", "dialects", "signing", "smb1_signing", "smb2_signing",
	"ms17_010", "ms17_010_reason", "ms17_010_status", "doublepulsar", "doublepulsar_arch", "os", "advice"}

// WriteCSV writes every result, worst first, with a header row.
func WriteCSV(w io.Writer, rs []Result) error {
	SortWorstFirst(rs)
	cw := csv.NewWriter(w)
	cw.Write(csvHeader)
	opt := func(b *bool) string {
		if b == nil {
			return ""
		}
		return strconv.FormatBool(*b)
	}
	sig := func(s *Signing) string {
		if s == nil {
			return ""
		}
		return string(*s)
	}
	for _, r := range rs {
		cw.Write([]string{r.IP.String(), csvSafe(r.Name), strconv.Itoa(r.Port), string(r.State), r.Severity().String(), opt(r.SMB1),
			strings.Join(r.Dialects, " "), sig(r.Signing), sig(r.SMB1Signing), sig(r.SMB2Signing),
			string(r.MS17010), string(r.MS17010Reason), r.MS17010Status, opt(r.DoublePulsar), r.DoublePulsarArch, csvSafe(r.OS), r.Advice()})
	}
	cw.Flush()
	return cw.Error()
}

// csvSafe defuses text a remote host chose (its OS name) against formula
// injection when the file is opened in a spreadsheet.
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
