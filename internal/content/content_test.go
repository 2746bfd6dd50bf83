package content

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/base64"
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
	f.Fuzz(func(t *testing.T, a, b []byte) {
		for _, s := range [][]byte{a, b} {
			ty := Detect(s)
			Verify(ty, s)
			VerifyMedia(ty, s)
			Hidden(s)
			RandomFraction(s, 4096)
		}
		ChangedBytes(a, b)
		if s := Similarity(a, b); s < 0 || s > 1 {
			t.Fatalf("similarity %v", s)
		}
	})
}
