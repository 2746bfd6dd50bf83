package agent

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/killswitch-dev/killswitch/internal/cutoff"
	"github.com/killswitch-dev/killswitch/internal/hub/store"
	"github.com/killswitch-dev/killswitch/internal/testenv"
)

func listen(t *testing.T) int {
	l, err := net.Listen("tcp", "10.201.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// reachable connects from inside the namespace.
func reachable(ns string, port int) bool {
	cmd := exec.Command("ip", "netns", "exec", ns, "timeout", "2", "bash", "-c", "exec 3<>/dev/tcp/10.201.0.1/"+strconv.Itoa(port))
	return cmd.Run() == nil
}

// TestIsolation runs the real nftables isolation inside a namespace: only
// the hub stays reachable; release restores everything; a host cut off
// from the hub for too long releases itself.
func TestIsolation(t *testing.T) {
	testenv.RequireTool(t, "nft")
	ns := testenv.Netns(t, 201) // 10.201.0.1 here, 10.201.0.2 inside
	hubPort, otherPort := listen(t), listen(t)
	if !reachable(ns, hubPort) || !reachable(ns, otherPort) {
		t.Fatal("the namespace cannot reach this side before isolation")
	}
	h := &Host{Hub: "https://10.201.0.1:" + strconv.Itoa(hubPort), NFT: []string{"ip", "netns", "exec", ns, "nft"}}
	ctx := context.Background()
	if err := h.Isolate(ctx); err != nil {
		t.Fatal(err)
	}
	if !h.Isolated() || !reachable(ns, hubPort) || reachable(ns, otherPort) {
		t.Fatalf("isolated: hub reachable %v (want true), other reachable %v (want false)", reachable(ns, hubPort), reachable(ns, otherPort))
	}
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if h.Isolated() || !reachable(ns, otherPort) {
		t.Fatal("release did not restore the network")
	}
	// cut off from the hub: the watchdog lifts the isolation
	if err := h.Isolate(ctx); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	released := make(chan struct{})
	go h.Watch(wctx, func() time.Time { return time.Now().Add(-time.Hour) }, 200*time.Millisecond, func() { close(released) })
	select {
	case <-released:
	case <-time.After(10 * time.Second):
		t.Fatal("isolation not undone after the hub went silent")
	}
	if !reachable(ns, otherPort) {
		t.Error("network not restored by the watchdog")
	}
}

// TestReleaseClientAction: the hub's release-client action lifts a guard's
// cut-off of a file-server client (here inside a namespace of the test's
// own, as a file server's firewall).
func TestReleaseClientAction(t *testing.T) {
	testenv.RequireTool(t, "nft")
	ns := testenv.Netns(t, 206)
	h := &Host{NFT: []string{"ip", "netns", "exec", ns, "nft"}, CutOffState: filepath.Join(t.TempDir(), "cutoff.json")}
	fw := cutoff.Firewall{NFT: h.NFT, State: h.CutOffState}
	ctx := context.Background()
	client := netip.MustParseAddr("10.206.0.1")
	if err := fw.Block(ctx, client, "ks-1"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "10.206.0.300", "10.206.0.9"} { // the last one is not cut off
		if ok, msg := h.Run(ctx, store.Action{Kind: "release-client", Args: bad}); ok {
			t.Errorf("release-client %q succeeded: %s", bad, msg)
		}
	}
	if ok, msg := h.Run(ctx, store.Action{Kind: "release-client", Args: client.String()}); !ok || !strings.Contains(msg, "released") {
		t.Fatalf("release-client: %v %s", ok, msg)
	}
	if l, err := fw.List(); err != nil || len(l) != 0 {
		t.Errorf("still cut off after release: %v %v", l, err)
	}
}
