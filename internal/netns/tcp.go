package netns

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// TCP reads the TCP sockets of pid's network namespace (tcp and tcp6
// tables under proc, normally "/proc"). A missing table is skipped.
func TCP(proc string, pid int) ([]Conn, error) {
	var out []Conn
	for _, table := range []string{"/net/tcp", "/net/tcp6"} {
		p := proc + "/" + strconv.Itoa(pid) + table
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		conns, err := ParseTCP(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		out = append(out, conns...)
	}
	return out, nil
}

// TCP states in the tables.
const (
	Established = 0x01
	Listen      = 0x0A
)

// Conn is one line of /proc/net/tcp or tcp6.
type Conn struct {
	Local, Remote netip.AddrPort
	State         int
	Inode         uint64
}

// ParseTCP decodes /proc/net/tcp or /proc/net/tcp6 (the header line
// first, then one socket per line).
func ParseTCP(data []byte) ([]Conn, error) {
	var out []Conn
	sc := bufio.NewScanner(bytes.NewReader(data))
	first := true
	for sc.Scan() {
		if first { // the header
			first = false
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) < 10 {
			return nil, fmt.Errorf("short line %q", sc.Text())
		}
		local, err := parseAddrPort(f[1])
		if err != nil {
			return nil, err
		}
		remote, err := parseAddrPort(f[2])
		if err != nil {
			return nil, err
		}
		state, err := strconv.ParseUint(f[3], 16, 8)
		if err != nil {
			return nil, fmt.Errorf("state %q: %w", f[3], err)
		}
		inode, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("inode %q: %w", f[9], err)
		}
		out = append(out, Conn{Local: local, Remote: remote, State: int(state), Inode: inode})
	}
	return out, sc.Err()
}

// parseAddrPort decodes "0100007F:01BD": the address as the kernel's
// 32-bit words in host order (little-endian here), then the port in hex.
func parseAddrPort(s string) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("address %q", s)
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("port in %q: %w", s, err)
	}
	raw, err := hex.DecodeString(a)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("address %q", s)
	}
	for i := 0; i < len(raw); i += 4 {
		binary.BigEndian.PutUint32(raw[i:], binary.LittleEndian.Uint32(raw[i:]))
	}
	addr, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(addr, uint16(port)), nil
}
