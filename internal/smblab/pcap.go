package smblab

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sort"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/killswitch-dev/killswitch/internal/smb"
)

// Pair is one request the capture's client sent and the reply the server
// gave to it, as SMB messages without NetBIOS framing.
type Pair struct {
	Request, Reply []byte
}

// Exchanges reads a classic pcap and returns, for each TCP connection to
// server on port 445 or 139, the request/reply pairs in order. Connections
// are in the order they started. Replies are matched to requests by SMB1
// MID (or SMB2 message ID); a reply with a MID no request used (the
// DoublePulsar sign) is paired with the latest request before it.
func Exchanges(path string, server netip.Addr) ([][]Pair, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	type segment struct {
		seq  uint32
		data []byte
	}
	type stream struct {
		toServer []segment
		toClient []segment
	}
	current := map[string]*stream{} // by client address:port
	var ordered []*stream
	var eth layers.Ethernet
	var ip4 layers.IPv4
	var tcp layers.TCP
	var payload gopacket.Payload
	parser := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &ip4, &tcp, &payload)
	parser.IgnoreUnsupported = true
	var decoded []gopacket.LayerType
	for {
		data, _, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if err := parser.DecodeLayers(data, &decoded); err != nil {
			continue
		}
		if len(decoded) < 3 || decoded[2] != layers.LayerTypeTCP {
			continue
		}
		src, _ := netip.AddrFromSlice(ip4.SrcIP.To4())
		dst, _ := netip.AddrFromSlice(ip4.DstIP.To4())
		var key string
		var toServer bool
		switch {
		case dst == server && (tcp.DstPort == 445 || tcp.DstPort == 139):
			key, toServer = fmt.Sprintf("%s:%d", src, tcp.SrcPort), true
		case src == server && (tcp.SrcPort == 445 || tcp.SrcPort == 139):
			key = fmt.Sprintf("%s:%d", dst, tcp.DstPort)
		default:
			continue
		}
		s := current[key]
		if s == nil || (tcp.SYN && !tcp.ACK) { // a reused port starts a new connection
			s = &stream{}
			current[key] = s
			ordered = append(ordered, s)
		}
		if len(tcp.Payload) == 0 {
			continue
		}
		seg := segment{tcp.Seq, bytes.Clone(tcp.Payload)}
		if toServer {
			s.toServer = append(s.toServer, seg)
		} else {
			s.toClient = append(s.toClient, seg)
		}
	}
	// Reassemble each direction by sequence number, dropping retransmissions.
	join := func(segs []segment) []byte {
		sort.SliceStable(segs, func(i, j int) bool { return int32(segs[i].seq-segs[j].seq) < 0 })
		var out []byte
		var next uint32
		for i, s := range segs {
			if i > 0 && int32(s.seq-next) < 0 {
				skip := int(next - s.seq)
				if skip >= len(s.data) {
					continue
				}
				s.data = s.data[skip:]
			}
			out = append(out, s.data...)
			next = s.seq + uint32(len(s.data))
			if i > 0 && int32(s.seq-segs[i-1].seq) < 0 {
				next = segs[i-1].seq
			}
		}
		return out
	}
	var out [][]Pair
	for _, s := range ordered {
		pairs := pairUp(frames(join(s.toServer)), frames(join(s.toClient)))
		if len(pairs) > 0 {
			out = append(out, pairs)
		}
	}
	return out, nil
}

// frames splits a byte stream into NetBIOS session messages, stopping at
// the first incomplete one (a capture may end mid-message).
func frames(b []byte) [][]byte {
	var out [][]byte
	rd := bytes.NewReader(b)
	for {
		m, err := smb.ReadFrame(rd)
		if err != nil {
			return out
		}
		out = append(out, m)
	}
}

func msgID(m []byte) (uint64, bool) {
	if smb.IsSMB1(m) && len(m) >= 32 {
		return uint64(m[30]) | uint64(m[31])<<8, true
	}
	if smb.IsSMB2(m) && len(m) >= 32 {
		var id uint64
		for i := 7; i >= 0; i-- {
			id = id<<8 | uint64(m[24+i])
		}
		return id, true
	}
	return 0, false
}

func pairUp(reqs, reps [][]byte) []Pair {
	var pairs []Pair
	used := make([]bool, len(reqs))
	for _, rep := range reps {
		id, ok := msgID(rep)
		if !ok {
			continue
		}
		match := -1
		for i, req := range reqs {
			if rid, ok := msgID(req); ok && !used[i] && rid == id && len(req) > 4 && req[4] == rep[4] {
				match = i
				break
			}
		}
		for i, req := range reqs { // the implant's MID+16: the first open request of that command
			if match < 0 && !used[i] && len(req) > 4 && req[4] == rep[4] {
				match = i
			}
		}
		if match < 0 {
			continue
		}
		used[match] = true
		pairs = append(pairs, Pair{Request: reqs[match], Reply: rep})
	}
	return pairs
}
