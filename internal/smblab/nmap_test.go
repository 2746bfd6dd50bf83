package smblab

import (
	"net/netip"
	"os"
	"testing"
)

func TestParseNmapXML(t *testing.T) {
	b, err := os.ReadFile("testdata/nmap-sample.xml")
	if err != nil {
		t.Fatal(err)
	}
	hosts, err := ParseNmapXML(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		t.Logf("%+v", h)
	}
	_ = netip.Addr{}
}
