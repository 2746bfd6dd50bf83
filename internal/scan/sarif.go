package scan

import (
	"encoding/json"
	"fmt"
	"io"
)

// SARIF 2.1.0: what code-scanning dashboards and SIEM importers take. Each
// finding is a result of one rule, located at smb://address:port.

type sarifRule struct {
	ID               string            `json:"id"`
	Name             string            `json:"name"`
	ShortDescription sarifText         `json:"shortDescription"`
	Help             sarifText         `json:"help"`
	Properties       map[string]any    `json:"properties,omitempty"`
	DefaultConfig    map[string]string `json:"defaultConfiguration"`
}

type sarifText struct {
	Text string `json:"text"`
}

var sarifRules = []sarifRule{
	{ID: "KS001", Name: "DoublePulsarImplant", ShortDescription: sarifText{"The DoublePulsar implant answers: the host is compromised"},
		Help: sarifText{"Isolate the host, reimage it, apply MS17-010 and disable SMBv1."}, DefaultConfig: map[string]string{"level": "error"},
		Properties: map[string]any{"security-severity": "10.0", "tags": []string{"security", "malware"}}},
	{ID: "KS002", Name: "MS17-010Missing", ShortDescription: sarifText{"MS17-010 (EternalBlue) is not applied"},
		Help: sarifText{"Apply MS17-010 and disable SMBv1; isolate the host until then."}, DefaultConfig: map[string]string{"level": "error"},
		Properties: map[string]any{"security-severity": "9.8", "tags": []string{"security", "CVE-2017-0144"}}},
	{ID: "KS003", Name: "SMBv1Enabled", ShortDescription: sarifText{"SMBv1 is enabled"},
		Help: sarifText{"Disable SMBv1 (Set-SmbServerConfiguration -EnableSMB1Protocol $false; Samba: server min protocol = SMB2_02)."}, DefaultConfig: map[string]string{"level": "warning"},
		Properties: map[string]any{"security-severity": "7.5", "tags": []string{"security"}}},
	{ID: "KS004", Name: "MS17-010Unknown", ShortDescription: sarifText{"SMBv1 is on and MS17-010 could not be checked"},
		Help: sarifText{"Check the patch level on the host; the reason says why the network check could not run."}, DefaultConfig: map[string]string{"level": "warning"},
		Properties: map[string]any{"security-severity": "7.0", "tags": []string{"security"}}},
	{ID: "KS005", Name: "SigningNotRequired", ShortDescription: sarifText{"SMB signing is not required"},
		Help: sarifText{"Require SMB signing to stop NTLM relay."}, DefaultConfig: map[string]string{"level": "note"},
		Properties: map[string]any{"security-severity": "5.0", "tags": []string{"security"}}},
}

// findings lists the rules a result breaks.
func findings(r *Result) []string {
	var ids []string
	if r.DoublePulsar != nil && *r.DoublePulsar {
		ids = append(ids, "KS001")
	}
	if r.MS17010 == MS17Vulnerable {
		ids = append(ids, "KS002")
	}
	if r.SMB1 != nil && *r.SMB1 {
		ids = append(ids, "KS003")
		if r.MS17010 == MS17Unknown {
			ids = append(ids, "KS004")
		}
	}
	if r.Signing != nil && *r.Signing != SigningRequired {
		ids = append(ids, "KS005")
	}
	return ids
}

// WriteSARIF writes one SARIF log with a result per finding.
func WriteSARIF(w io.Writer, rs []Result, version string) error {
	SortWorstFirst(rs)
	results := []map[string]any{}
	for i := range rs {
		r := &rs[i]
		for _, id := range findings(r) {
			level := "warning"
			for _, rule := range sarifRules {
				if rule.ID == id {
					level = rule.DefaultConfig["level"]
				}
			}
			uri := fmt.Sprintf("smb://%s/", netAddr(r))
			results = append(results, map[string]any{
				"ruleId":  id,
				"level":   level,
				"message": map[string]string{"text": fmt.Sprintf("%s port %d: %s", r.IP, r.Port, r.Advice())},
				"locations": []any{map[string]any{
					"physicalLocation": map[string]any{"artifactLocation": map[string]string{"uri": uri}},
					"logicalLocations": []any{map[string]string{"name": netAddr(r), "kind": "host"}},
				}},
				"partialFingerprints": map[string]string{"host/v1": fmt.Sprintf("%s:%d:%s", r.IP, r.Port, id)},
				"properties":          r,
			})
		}
	}
	log := map[string]any{
		"$schema": "https://json.schemastore.org/sarif-2.1.0.json",
		"version": "2.1.0",
		"runs": []any{map[string]any{
			"tool": map[string]any{"driver": map[string]any{
				"name": "killswitch scan", "version": version, "informationUri": "https://github.com/killswitch-dev/killswitch", "rules": sarifRules,
			}},
			"results": results,
		}},
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(log)
}

func netAddr(r *Result) string {
	if r.IP.Is6() {
		return fmt.Sprintf("[%s]:%d", r.IP, r.Port)
	}
	return fmt.Sprintf("%s:%d", r.IP, r.Port)
}
