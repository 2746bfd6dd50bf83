package content

import (
	"bytes"
	"compress/bzip2"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"hash/crc32"
	"io"
	"math"

	"github.com/klauspost/compress/zstd"
)

// SampleSize is how much of a file's head the guard reads for analysis.
// Known partial-encryption schemes (LockBit's 4 KB, Black Basta's stripes,
// ESXiArgs' 1 MB steps, Ryuk's blocks) all start at the head.
const SampleSize = 64 << 10

// Type is a coarse file type from magic bytes.
type Type string

// Types the detector reasons about. Unknown means "binary, no magic known".
const (
	Empty   Type = "empty"
	Text    Type = "text"
	PNG     Type = "png"
	JPEG    Type = "jpeg"
	GIF     Type = "gif"
	PDF     Type = "pdf"
	Zip     Type = "zip" // also docx/xlsx/odt/jar
	Gzip    Type = "gzip"
	Zlib    Type = "zlib"
	Zstd    Type = "zstd"
	Bzip2   Type = "bzip2"
	XZ      Type = "xz"
	SevenZ  Type = "7z"
	SQLite  Type = "sqlite"
	ELF     Type = "elf"
	GitPack Type = "git-pack"
	GitIdx  Type = "git-idx"
	Salted  Type = "openssl-salted"
	Unknown Type = "binary"
)

var magics = []struct {
	prefix []byte
	t      Type
}{
	{[]byte("\x89PNG\r\n\x1a\n"), PNG},
	{[]byte{0xff, 0xd8, 0xff}, JPEG},
	{[]byte("GIF8"), GIF},
	{[]byte("%PDF-"), PDF},
	{[]byte("PK\x03\x04"), Zip},
	{[]byte("PK\x05\x06"), Zip},
	{[]byte{0x1f, 0x8b}, Gzip},
	{[]byte{0x28, 0xb5, 0x2f, 0xfd}, Zstd},
	{[]byte("BZh"), Bzip2},
	{[]byte{0xfd, '7', 'z', 'X', 'Z', 0}, XZ},
	{[]byte{'7', 'z', 0xbc, 0xaf, 0x27, 0x1c}, SevenZ},
	{[]byte("SQLite format 3\x00"), SQLite},
	{[]byte("\x7fELF"), ELF},
	{[]byte("PACK"), GitPack},
	{[]byte("\xfftOc"), GitIdx},
	{[]byte("Salted__"), Salted},
}

// Detect returns the type of a sample.
func Detect(b []byte) Type {
	if len(b) == 0 {
		return Empty
	}
	for _, m := range magics {
		if bytes.HasPrefix(b, m.prefix) {
			return m.t
		}
	}
	if len(b) >= 2 && b[0]&0x0f == 8 && (uint16(b[0])<<8|uint16(b[1]))%31 == 0 {
		return Zlib
	}
	if isText(b) {
		return Text
	}
	return Unknown
}

func isText(b []byte) bool {
	if len(b) > 4096 {
		b = b[:4096]
	}
	bad := 0
	for _, c := range b {
		if c == 0 {
			return false
		}
		if c < 0x20 && c != '\n' && c != '\r' && c != '\t' && c != '\f' {
			bad++
		}
	}
	return bad*100 <= len(b) // UTF-8 bytes >= 0x80 are fine
}

// Compressed reports whether t is a compressed or archive format.
func (t Type) Compressed() bool {
	switch t {
	case Zip, Gzip, Zlib, Zstd, Bzip2, XZ, SevenZ, GitPack:
		return true
	}
	return false
}

// Entropy is the Shannon entropy of b in bits per byte.
func Entropy(b []byte) float64 {
	if len(b) == 0 {
		return 0
	}
	var counts [256]int
	for _, c := range b {
		counts[c]++
	}
	n := float64(len(b))
	h := 0.0
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / n
			h -= p * math.Log2(p)
		}
	}
	return h
}

// ChiSquare is Pearson's statistic of b's byte histogram against uniform
// (255 degrees of freedom: about 255 for random bytes; compressed streams
// and media land far higher, text far higher still).
func ChiSquare(b []byte) float64 {
	if len(b) == 0 {
		return math.Inf(1)
	}
	var counts [256]int
	for _, c := range b {
		counts[c]++
	}
	exp := float64(len(b)) / 256
	x := 0.0
	for _, c := range counts {
		d := float64(c) - exp
		x += d * d / exp
	}
	return x
}

// minRandom is the smallest run worth a randomness verdict: shorter runs
// cannot be told apart from structured binary by their histogram.
const minRandom = 256

// LooksRandom reports whether b is indistinguishable from uniform random
// bytes by its histogram. The chi-square bound (p < 1e-6 for uniform data
// at 255 dof) separates ciphertext from deflate, JPEG and text.
func LooksRandom(b []byte) bool {
	if len(b) < minRandom {
		return false
	}
	counts := histogram(b)
	return histRandom(&counts, len(b))
}

// histogram counts each byte value of b, in four tables filled from
// alternate bytes: a run of one byte value (text, padding) would otherwise
// make every increment wait for the one before.
func histogram(b []byte) [256]int {
	var t [4][256]uint32
	i := 0
	for ; i+4 <= len(b); i += 4 {
		t[0][b[i]]++
		t[1][b[i+1]]++
		t[2][b[i+2]]++
		t[3][b[i+3]]++
	}
	for ; i < len(b); i++ {
		t[0][b[i]]++
	}
	var counts [256]int
	for v := range counts {
		counts[v] = int(t[0][v]) + int(t[1][v]) + int(t[2][v]) + int(t[3][v])
	}
	return counts
}

// RandomFraction splits b into blocks and returns the fraction that look
// random. Intermittent encryption shows up as a fraction between 0 and 1.
func RandomFraction(b []byte, block int) float64 {
	if len(b) < minRandom {
		return 0
	}
	if block > len(b) {
		block = len(b)
	}
	// The shortest block judged is the last one, at least minRandom long.
	shortest := block
	if tail := len(b) % block; tail >= minRandom {
		shortest = tail
	}
	if !mayLookRandom(distinct(b), shortest) {
		return 0
	}
	n, r := 0, 0
	for off := 0; off+minRandom <= len(b); off += block {
		end := min(off+block, len(b))
		n++
		if LooksRandom(b[off:end]) {
			r++
		}
	}
	return float64(r) / float64(n)
}

// Verify reports whether a sample claimed to be of a compressed type really
// decodes: at least the first kilobytes of output come out without error
// (a sample may end mid-stream; running out of input is fine).
func Verify(t Type, b []byte) bool {
	var r io.Reader
	var err error
	switch t {
	case Gzip:
		r, err = gzip.NewReader(bytes.NewReader(b))
	case Zlib:
		r, err = zlib.NewReader(bytes.NewReader(b))
	case Bzip2:
		r = bzip2.NewReader(bytes.NewReader(b))
	case Zstd:
		var d *zstd.Decoder
		d, err = zstd.NewReader(bytes.NewReader(b), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(64<<20))
		if err == nil {
			defer d.Close()
			r = d
		}
	case Zip:
		return verifyZip(b)
	case GitPack:
		return verifyPack(b)
	default:
		return false
	}
	if err != nil {
		return false
	}
	return decodesSome(r, len(b))
}

// decodesSome reads from a decompressor until it errors or has produced
// enough to be convincing.
func decodesSome(r io.Reader, inLen int) bool {
	want := 4 << 10
	buf := make([]byte, 8<<10)
	got := 0
	for got < want {
		n, err := r.Read(buf)
		got += n
		if err == io.EOF {
			return got > 0 || inLen < 64
		}
		if err == io.ErrUnexpectedEOF {
			// The sample ended mid-stream after decoding cleanly so far.
			return got > 0 || inLen >= SampleSize
		}
		if err != nil {
			return false
		}
	}
	return true
}

// verifyZip decodes the first local file entry of a zip container.
func verifyZip(b []byte) bool {
	if len(b) >= 4 && string(b[:4]) == "PK\x05\x06" {
		return len(b) >= 22 // empty archive: end record only
	}
	if len(b) < 30 {
		return false
	}
	method := binary.LittleEndian.Uint16(b[8:])
	csize := int(binary.LittleEndian.Uint32(b[18:]))
	nameLen := int(binary.LittleEndian.Uint16(b[26:]))
	extraLen := int(binary.LittleEndian.Uint16(b[28:]))
	off := 30 + nameLen + extraLen
	if off > len(b) {
		return false
	}
	data := b[off:]
	if csize > 0 && csize < len(data) {
		data = data[:csize]
	}
	switch method {
	case 0: // stored
		return true
	case 8:
		return decodesSome(flate.NewReader(bytes.NewReader(data)), len(data))
	}
	return false
}

// verifyPack checks a git pack header and that its first object inflates.
func verifyPack(b []byte) bool {
	if len(b) < 13 {
		return false
	}
	v := binary.BigEndian.Uint32(b[4:])
	if v != 2 && v != 3 {
		return false
	}
	i := 12
	c := b[i]
	typ := (c >> 4) & 7
	for c&0x80 != 0 {
		i++
		if i >= len(b) {
			return false
		}
		c = b[i]
	}
	i++
	switch typ {
	case 6: // ofs-delta: variable-length offset follows
		for i < len(b) && b[i]&0x80 != 0 {
			i++
		}
		i++
	case 7: // ref-delta: 20-byte base name
		i += 20
	}
	if i >= len(b) || typ == 0 || typ == 5 {
		return false
	}
	r, err := zlib.NewReader(bytes.NewReader(b[i:]))
	if err != nil {
		return false
	}
	return decodesSome(r, len(b)-i)
}

// EncodedRandom reports whether b is random bytes hidden in base64 or hex,
// an evasion that keeps byte entropy near 6 or 4 bits.
func EncodedRandom(b []byte) bool {
	if len(b) < 2*minRandom || !encodedAlphabet(b[:64]) {
		return false
	}
	clean := make([]byte, 0, len(b))
	for _, c := range b {
		if c != '\n' && c != '\r' {
			clean = append(clean, c)
		}
	}
	if len(clean) < 2*minRandom {
		return false
	}
	clean = clean[:len(clean)/4*4]
	if dec, err := hex.DecodeString(string(clean)); err == nil {
		return LooksRandom(dec)
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding} {
		if dec, err := enc.DecodeString(string(clean)); err == nil {
			return LooksRandom(dec)
		}
	}
	return false
}

// encodedAlphabet reports whether b uses only base64/hex characters and newlines.
func encodedAlphabet(b []byte) bool {
	for _, c := range b {
		ok := c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' ||
			c == '+' || c == '/' || c == '=' || c == '-' || c == '_' || c == '\n' || c == '\r'
		if !ok {
			return false
		}
	}
	return true
}

// Wiped reports whether b is one byte repeated (zeros, 0xff, ...).
func Wiped(b []byte) bool {
	if len(b) < 64 {
		return false
	}
	for _, c := range b[1:] {
		if c != b[0] {
			return false
		}
	}
	return true
}

// ChangedBytes returns the bytes of post that differ from pre at the same
// offset (plus any bytes past pre's end). In-place and intermittent
// encryption leave the changed bytes random; an edit leaves them text-like.
func ChangedBytes(pre, post []byte) []byte {
	n := min(len(pre), len(post))
	if n == 0 {
		return post // everything is new (read-only, like every result here)
	}
	var out []byte
	for i := 0; i < n; i++ {
		// Equal stretches (most of an edited file) are skipped a word at a time.
		for i+8 <= n && binary.LittleEndian.Uint64(pre[i:]) == binary.LittleEndian.Uint64(post[i:]) {
			i += 8
		}
		if i < n && pre[i] != post[i] {
			out = append(out, post[i])
		}
	}
	return append(out, post[n:]...)
}

// Similarity estimates how much of pre survives in post (0..1), from
// sets of content-defined 8-byte shingles. Robust to insertions that shift
// offsets, unlike ChangedBytes.
func Similarity(pre, post []byte) float64 {
	a, b := shingles(pre), shingles(post)
	if len(a) == 0 {
		if len(b) == 0 {
			return 1
		}
		return 0
	}
	common := 0
	for h := range a {
		if _, ok := b[h]; ok {
			common++
		}
	}
	return float64(common) / float64(len(a))
}

func shingles(b []byte) map[uint64]struct{} {
	m := make(map[uint64]struct{})
	for i := 0; i+8 <= len(b); i++ {
		h := binary.LittleEndian.Uint64(b[i:]) * 0x9E3779B97F4A7C15
		if h>>58 == 0 { // keep about 1 in 64, chosen by content
			m[h] = struct{}{}
		}
	}
	return m
}

// Hidden reports whether b carries random bytes under a low-entropy
// disguise: base64 or hex, or random bytes interleaved with filler
// ("entropy sharing") so that the whole-buffer histogram looks tame.
// It runs on every write the guard judges, so it allocates nothing for
// ordinary content.
func Hidden(b []byte) bool {
	if EncodedRandom(b) {
		return true
	}
	d := distinct(b)
	for _, stride := range []int{2, 4} {
		n := len(b) / stride // the shortest lane judged
		if n < minRandom {
			n = (len(b) + stride - 1) / stride
		}
		if !mayLookRandom(d, n) {
			continue
		}
		for lane := 0; lane < stride; lane++ {
			if laneRandom(b, stride, lane) {
				return true
			}
		}
	}
	return false
}

// laneRandom is LooksRandom of every stride-th byte of b from lane.
func laneRandom(b []byte, stride, lane int) bool {
	var counts [256]int
	n := 0
	for i := lane; i < len(b); i += stride {
		counts[b[i]]++
		n++
	}
	if n < minRandom {
		return false
	}
	return histRandom(&counts, n)
}

// distinct counts the byte values that occur in b. (A plain histogram:
// faster here than a bitmap, whose updates wait on each other.)
func distinct(b []byte) int {
	counts := histogram(b)
	n := 0
	for _, c := range counts {
		if c > 0 {
			n++
		}
	}
	return n
}

// mayLookRandom reports whether any run of at least n bytes drawn from
// only d distinct values could pass histRandom: its entropy is at most
// log2(d), and histRandom asks for more than 8 - 384/n - 0.05 bits. A
// cheap test that rules out text before any histogram of its parts.
func mayLookRandom(d, n int) bool {
	if n < minRandom {
		return false
	}
	return math.Log2(float64(d)) > 8-1.5*256/float64(n)-0.05
}

// histRandom applies LooksRandom's tests to a byte histogram of n bytes.
func histRandom(counts *[256]int, n int) bool {
	exp := float64(n) / 256
	x, h := 0.0, 0.0
	for _, c := range counts {
		d := float64(c) - exp
		x += d * d / exp
		if c > 0 {
			p := float64(c) / float64(n)
			h -= p * math.Log2(p)
		}
	}
	return x < 400 && h > 8-1.5*256/float64(n)-0.05
}

// VerifyMedia checks the structure of formats whose bodies are
// legitimately high-entropy, so that a forged magic number on ciphertext is
// not mistaken for a picture or a database.
func VerifyMedia(t Type, b []byte) bool {
	switch t {
	case PNG:
		// First chunk is IHDR, 13 bytes, with a valid CRC.
		if len(b) < 33 || string(b[12:16]) != "IHDR" || binary.BigEndian.Uint32(b[8:]) != 13 {
			return false
		}
		return crc32IEEE(b[12:29]) == binary.BigEndian.Uint32(b[29:])
	case JPEG:
		// Walk the first segments: each is 0xFF marker + big-endian length.
		i := 2
		for seg := 0; seg < 3; seg++ {
			if i+4 > len(b) || b[i] != 0xff {
				return false
			}
			if b[i+1] == 0xda { // start of scan: entropy-coded data follows
				return true
			}
			i += 2 + int(binary.BigEndian.Uint16(b[i+2:]))
		}
		return true
	case SQLite:
		if len(b) < 100 {
			return false
		}
		ps := binary.BigEndian.Uint16(b[16:])
		return ps == 1 || (ps >= 512 && ps&(ps-1) == 0)
	case GitIdx:
		return len(b) >= 8 && binary.BigEndian.Uint32(b[4:]) == 2
	case GIF, PDF, ELF:
		return true
	}
	return false
}

func crc32IEEE(b []byte) uint32 { return crc32.ChecksumIEEE(b) }
