package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/killswitch-dev/killswitch/internal/smblab"
)

func TestScanUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"127.0.0.1", "-p", "0"},
		{"127.0.0.1", "-p", "445,x"},
		{"127.0.0.1", "--format", "xml"},
		{"224.0.0.1"},
		{"10.0.0.0/8", "--exclude", "10.0.0.0/8"},
		{"127.0.0.1", "--timeout", "0s"},
		{"127.0.0.1", "--no-such-flag"},
	} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), append([]string{"scan"}, args...), &stdout, &stderr)
		if code := exitCode(err, &stderr); code != exitUsage {
			t.Errorf("scan %v: exit %d (%v), want %d", args, code, err, exitUsage)
		}
	}
}

// TestScanCommand scans a replayed unpatched Windows 7 host: JSON on
// stdout, exit status 3, flags after the target.
func TestScanCommand(t *testing.T) {
	dir, err := smblab.PcapDir()
	if err != nil {
		t.Fatal(err)
	}
	h := smblab.RecordedHosts(dir)[0]
	peer, err := smblab.NewReplay(h.Name, h.Implant, h.Sources...)
	if err != nil {
		t.Fatal(err)
	}
	srv := smblab.NewServer()
	defer srv.Close()
	ap, err := srv.Listen(netip.MustParseAddr("127.0.0.1"), 0, peer)
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	err = run(context.Background(), []string{"scan", "127.0.0.1", "-p", strconv.Itoa(int(ap.Port())), "--json"}, &stdout, &stderr)
	if !errors.Is(err, errFindings) || exitCode(err, &stderr) != exitFindings {
		t.Fatalf("exit %v, want findings; stderr: %s", err, stderr.String())
	}
	var r map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("%v: %s", err, stdout.String())
	}
	if r["ms17_010"] != "vulnerable" || r["smb1"] != true || r["doublepulsar"] != false {
		t.Errorf("result %v", r)
	}
	if !strings.Contains(stderr.String(), "1 MS17-010 missing") {
		t.Errorf("summary line: %s", stderr.String())
	}

	stdout.Reset()
	run(context.Background(), []string{"scan", "-p", strconv.Itoa(int(ap.Port())), "127.0.0.1"}, &stdout, &stderr)
	if !strings.Contains(stdout.String(), "apply MS17-010") {
		t.Errorf("table lacks the advice:\n%s", stdout.String())
	}
}
