package simulate

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Marker is the file that makes a folder a simulator corpus.
const Marker = ".killswitch-corpus"

// ErrNotCorpus is returned for any folder the simulator did not make.
var ErrNotCorpus = errors.New("simulate: not a killswitch corpus (no valid " + Marker + " marker); refusing to touch it")

// Manifest is the marker's content.
type Manifest struct {
	Generator string            `json:"generator"`
	Created   time.Time         `json:"created"`
	Files     map[string]string `json:"files"` // relative path -> sha256
}

// MakeCorpus fills an empty (or missing) dir with about n files in nested
// folders and writes the marker. The same seed gives the same corpus.
func MakeCorpus(dir string, n int, seed uint64) (Manifest, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Manifest{}, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return Manifest{}, err
	}
	if len(ents) > 0 {
		return Manifest{}, fmt.Errorf("simulate: %s is not empty; a corpus is made only in an empty folder", dir)
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	m := Manifest{Generator: "killswitch", Created: time.Now().UTC(), Files: map[string]string{}}
	depts := []string{"Radiology", "Finance", "Logistics", "HR"}
	subs := []string{"reports", "scans/2017", "archive/old"}
	kinds := []func(*rand.Rand) (string, []byte){textFile, csvFile, jsonFile, sourceFile, pngFile, jpegFile, docxFile, pdfFile}
	for i := 0; i < n; i++ {
		folder := filepath.Join(depts[i%len(depts)], subs[(i/len(depts))%len(subs)])
		ext, data := kinds[i%len(kinds)](rng)
		rel := filepath.Join(folder, fmt.Sprintf("%s-%03d.%s", strings.ToLower(depts[i%len(depts)]), i, ext))
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return m, err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return m, err
		}
		sum := sha256.Sum256(data)
		m.Files[rel] = hex.EncodeToString(sum[:])
	}
	b, _ := json.MarshalIndent(m, "", " ")
	return m, os.WriteFile(filepath.Join(dir, Marker), b, 0o644)
}

// LoadManifest reads and validates a corpus marker.
func LoadManifest(dir string) (Manifest, error) {
	st, err := os.Lstat(filepath.Join(dir, Marker))
	if err != nil || !st.Mode().IsRegular() {
		return Manifest{}, ErrNotCorpus
	}
	b, err := os.ReadFile(filepath.Join(dir, Marker))
	if err != nil {
		return Manifest{}, ErrNotCorpus
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil || m.Generator != "killswitch" || len(m.Files) == 0 {
		return Manifest{}, ErrNotCorpus
	}
	for rel := range m.Files {
		if !filepath.IsLocal(rel) {
			return Manifest{}, fmt.Errorf("%w: manifest names %q outside the corpus", ErrNotCorpus, rel)
		}
	}
	return m, nil
}

// Sorted returns the manifest's paths in a stable order.
func (m Manifest) Sorted() []string {
	out := make([]string, 0, len(m.Files))
	for rel := range m.Files {
		out = append(out, rel)
	}
	sort.Strings(out)
	return out
}

// Damage compares a corpus with its manifest: files missing or changed.
func Damage(dir string, m Manifest) (damaged []string) {
	for _, rel := range m.Sorted() {
		b, err := os.ReadFile(filepath.Join(dir, rel))
		sum := sha256.Sum256(b)
		if err != nil || hex.EncodeToString(sum[:]) != m.Files[rel] {
			damaged = append(damaged, rel)
		}
	}
	return damaged
}

// Extra lists files in the corpus that the manifest does not name (ransom
// notes, encrypted copies), excluding the marker.
func Extra(dir string, m Manifest) (extra []string) {
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		if _, ok := m.Files[rel]; !ok && rel != Marker {
			extra = append(extra, rel)
		}
		return nil
	})
	return extra
}

var words = strings.Fields(`patient ward discharge referral appointment radiology scan report invoice shipment
	parcel manifest customs route depot delivery payroll budget ledger audit policy clinic theatre pharmacy
	the and of to in for with on at by from is was are be this that which`)

func sentence(rng *rand.Rand, n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(words[rng.IntN(len(words))])
	}
	return b.String()
}

func textFile(rng *rand.Rand) (string, []byte) {
	var b bytes.Buffer
	for i := 0; i < 20+rng.IntN(200); i++ {
		b.WriteString(sentence(rng, 8+rng.IntN(10)) + ".\n")
	}
	return "txt", b.Bytes()
}

func csvFile(rng *rand.Rand) (string, []byte) {
	var b bytes.Buffer
	b.WriteString("id,date,ward,amount,status\n")
	for i := 0; i < 50+rng.IntN(500); i++ {
		fmt.Fprintf(&b, "%d,2017-05-%02d,%s,%d.%02d,%s\n", i, 1+rng.IntN(28), words[rng.IntN(8)], rng.IntN(5000), rng.IntN(100), words[8+rng.IntN(8)])
	}
	return "csv", b.Bytes()
}

func jsonFile(rng *rand.Rand) (string, []byte) {
	var recs []map[string]any
	for i := 0; i < 20+rng.IntN(100); i++ {
		recs = append(recs, map[string]any{"id": i, "name": sentence(rng, 2), "priority": rng.IntN(5), "notes": sentence(rng, 6)})
	}
	b, _ := json.MarshalIndent(recs, "", "  ")
	return "json", b
}

func sourceFile(rng *rand.Rand) (string, []byte) {
	var b bytes.Buffer
	b.WriteString("package records\n\nimport \"fmt\"\n\n")
	for i := 0; i < 5+rng.IntN(30); i++ {
		fmt.Fprintf(&b, "// %s\nfunc f%d(x int) int {\n\tif x > %d {\n\t\tfmt.Println(%q)\n\t}\n\treturn x * %d\n}\n\n",
			sentence(rng, 6), i, rng.IntN(100), sentence(rng, 3), rng.IntN(9)+1)
	}
	return "go", b.Bytes()
}

func picture(rng *rand.Rand) image.Image {
	w, h := 64+rng.IntN(128), 64+rng.IntN(128)
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	cx, cy := rng.IntN(w), rng.IntN(h)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			d := (x-cx)*(x-cx) + (y-cy)*(y-cy)
			img.Set(x, y, color.RGBA{uint8(d / 7), uint8(x * 2), uint8(y * 3), 255})
		}
	}
	return img
}

func pngFile(rng *rand.Rand) (string, []byte) {
	var b bytes.Buffer
	png.Encode(&b, picture(rng))
	return "png", b.Bytes()
}

func jpegFile(rng *rand.Rand) (string, []byte) {
	var b bytes.Buffer
	jpeg.Encode(&b, picture(rng), &jpeg.Options{Quality: 85})
	return "jpg", b.Bytes()
}

func docxFile(rng *rand.Rand) (string, []byte) {
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	parts := map[string]string{
		"[Content_Types].xml": `<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>`,
		"word/document.xml":   `<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>` + sentence(rng, 300) + `</w:t></w:r></w:p></w:body></w:document>`,
	}
	for _, name := range []string{"[Content_Types].xml", "word/document.xml"} {
		w, _ := zw.Create(name)
		w.Write([]byte(parts[name]))
	}
	zw.Close()
	return "docx", b.Bytes()
}

func pdfFile(rng *rand.Rand) (string, []byte) {
	text := sentence(rng, 12)
	stream := "BT /F1 12 Tf 72 720 Td (" + text + ") Tj ET"
	objs := []string{
		"<< /Type /Catalog /Pages 2 0 R >>",
		"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
		"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
		fmt.Sprintf("<< /Length %d >>\nstream\n%s\nendstream", len(stream), stream),
		"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
	}
	var b bytes.Buffer
	b.WriteString("%PDF-1.4\n")
	var offs []int
	for i, o := range objs {
		offs = append(offs, b.Len())
		fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", i+1, o)
	}
	xref := b.Len()
	fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f \n", len(objs)+1)
	for _, off := range offs {
		fmt.Fprintf(&b, "%010d 00000 n \n", off)
	}
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(objs)+1, xref)
	return "pdf", b.Bytes()
}
