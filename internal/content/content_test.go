package content

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/base64"
	mrand "math/rand/v2"
	"strings"
	"testing"
)

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func gz(b []byte) []byte {
	var out bytes.Buffer
	w := gzip.NewWriter(&out)
	w.Write(b)
	w.Close()
	return out.Bytes()
}

func TestRandomnessSeparatesCiphertextFromTextAndDeflate(t *testing.T) {
	text := []byte(strings.Repeat("patient discharged from ward 7 after review. ", 400))
	if !LooksRandom(random(16 << 10)) {
		t.Error("random bytes not random")
	}
	if LooksRandom(text) {
		t.Error("text looks random")
	}
	if Hidden(text) || !Hidden([]byte(base64.StdEncoding.EncodeToString(random(8<<10)))) {
		t.Error("base64 of random bytes not seen as hidden randomness")
	}
	inter := make([]byte, 0, 16<<10)
	for _, c := range random(8 << 10) {
		inter = append(inter, c, 0)
	}
	if LooksRandom(inter) || !Hidden(inter) {
		t.Error("interleaved ciphertext not seen as hidden randomness")
	}
}

func TestVerifyTellsRealCompressionFromForgedMagic(t *testing.T) {
	real := gz([]byte(strings.Repeat("log line 42 ok\n", 5000)))
	if Detect(real) != Gzip || !Verify(Gzip, real) {
		t.Fatal("real gzip does not verify")
	}
	forged := append([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3}, random(8<<10)...)
	if Verify(Gzip, forged) {
		t.Fatal("gzip magic on random bytes verified")
	}
	// A sample cut mid-stream still verifies.
	big := gz(random(256 << 10))
	if !Verify(Gzip, big[:SampleSize]) {
		t.Fatal("truncated sample of a real gzip stream did not verify")
	}
}

func TestChangedBytesOfStripes(t *testing.T) {
	pre := []byte(strings.Repeat("The quick brown fox jumps over the lazy dog. ", 500))
	post := append([]byte(nil), pre...)
	ct := random(len(pre))
	for i := 0; i < len(pre); i += 32 {
		copy(post[i:min(i+16, len(pre))], ct[i:min(i+16, len(pre))])
	}
	if !LooksRandom(ChangedBytes(pre, post)) {
		t.Fatal("striped encryption: changed bytes should be random")
	}
	edit := bytes.Replace(pre, []byte("lazy"), []byte("tired"), 3)
	if LooksRandom(ChangedBytes(pre, edit)) {
		t.Fatal("an edit's changed bytes look random")
	}
	if s := Similarity(pre, edit); s < 0.5 {
		t.Fatalf("similarity of an edit = %.2f", s)
	}
}

func FuzzContent(f *testing.F) {
	f.Add([]byte("PK\x03\x04"), []byte("x"))
	f.Add(gz([]byte("hello")), []byte("\x89PNG\r\n\x1a\n"))
	f.Add([]byte("PACK\x00\x00\x00\x02\x00\x00\x00\x01\x95"), []byte("SQLite format 3\x00"))
	doc := bytes.Repeat([]byte("ward 3 discharge notes\n"), 40)
	edited := bytes.Clone(doc)
	copy(edited[17:], "EDITED")
	f.Add(doc, append(edited, "appended"...))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		for _, s := range [][]byte{a, b} {
			ty := Detect(s)
			Verify(ty, s)
			VerifyMedia(ty, s)
			if got, want := Hidden(s), hiddenEveryLane(s); got != want {
				t.Fatalf("Hidden = %v, judging every lane says %v", got, want)
			}
			for _, block := range []int{300, 4096} {
				if got, want := RandomFraction(s, block), randomFractionEveryBlock(s, block); got != want {
					t.Fatalf("RandomFraction(%d) = %v, judging every block says %v", block, got, want)
				}
			}
		}
		if got, want := ChangedBytes(a, b), changedByteByByte(a, b); !bytes.Equal(got, want) {
			t.Fatalf("ChangedBytes = %q, byte by byte %q", got, want)
		}
		if s := Similarity(a, b); s < 0 || s > 1 {
			t.Fatalf("similarity %v", s)
		}
	})
}

// The early exits of Hidden and RandomFraction (too few distinct bytes to
// look random) must never change a verdict: these judge every part.
func hiddenEveryLane(b []byte) bool {
	if EncodedRandom(b) {
		return true
	}
	for _, stride := range []int{2, 4} {
		for lane := 0; lane < stride; lane++ {
			if laneRandom(b, stride, lane) {
				return true
			}
		}
	}
	return false
}

func randomFractionEveryBlock(b []byte, block int) float64 {
	if len(b) < minRandom {
		return 0
	}
	block = min(block, len(b))
	n, r := 0, 0
	for off := 0; off+minRandom <= len(b); off += block {
		n++
		if LooksRandom(b[off:min(off+block, len(b))]) {
			r++
		}
	}
	return float64(r) / float64(n)
}

// TestEarlyExitsKeepVerdicts covers the borders: random bytes, random
// bytes over a reduced alphabet, lanes of random bytes between text, and
// lengths around the shortest judged run.
func TestEarlyExitsKeepVerdicts(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(1, 2))
	var cases [][]byte
	for _, n := range []int{255, 256, 257, 511, 512, 513, 1023, 1024, 1025, 4096, 4097, 4096 + 255, 4096 + 256, 65536} {
		for _, alphabet := range []int{256, 200, 120, 90, 64} {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(rng.IntN(alphabet))
			}
			cases = append(cases, b)
			lanes := bytes.Repeat([]byte("text"), n/4+1)[:n]
			for i := 0; i < n; i += 2 {
				lanes[i] = byte(rng.IntN(alphabet))
			}
			cases = append(cases, lanes)
		}
	}
	for i, b := range cases {
		if got, want := Hidden(b), hiddenEveryLane(b); got != want {
			t.Errorf("case %d (%d bytes): Hidden = %v, every lane says %v", i, len(b), got, want)
		}
		for _, block := range []int{300, 4096} {
			if got, want := RandomFraction(b, block), randomFractionEveryBlock(b, block); got != want {
				t.Errorf("case %d (%d bytes): RandomFraction(%d) = %v, every block says %v", i, len(b), block, got, want)
			}
		}
	}
}

func changedByteByByte(pre, post []byte) []byte {
	var out []byte
	for i, c := range post {
		if i >= len(pre) || pre[i] != c {
			out = append(out, c)
		}
	}
	return out
}
