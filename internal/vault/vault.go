package vault

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
	_ "modernc.org/sqlite" // database/sql driver "sqlite"
)

// ErrCorrupt is wrapped by every error about damaged vault content.
var ErrCorrupt = errors.New("vault: corrupt")

// ErrNotFound is returned when a blob or version does not exist.
var ErrNotFound = errors.New("vault: not found")

// Kind says what a version row records.
type Kind string

// Version kinds.
const (
	Content Kind = "content" // Hash holds the file's bytes
	Deleted Kind = "deleted"
	Moved   Kind = "moved" // the file left Path for NewPath
)

// Version is one index row.
type Version struct {
	ID      int64
	Path    string
	Time    time.Time // when the guard recorded it
	Kind    Kind
	Hash    string // hex sha256 of the plaintext (Content)
	Size    int64
	Mode    os.FileMode
	UID     int
	GID     int
	MTime   time.Time
	Actor   string // pid@start of the writer, "" for baseline and catch-up
	Exe     string
	NewPath string // for Moved
	Reason  string // baseline, close-write, catch-up, rename, restore
}

// Vault is safe for concurrent use.
type Vault struct {
	dir string
	db  *sql.DB
	// The committer's own connection and insert statement, prepared once:
	// preparing it in every transaction cost more than the rows it wrote.
	wconn  *sql.Conn
	insert *sql.Stmt
	enc    *zstd.Encoder
	// heads reuses decoders for Head, which the guard calls on every
	// close-write: building a zstd decoder costs more than decoding 64 KiB.
	heads sync.Pool
	mu    sync.Mutex // serialises index writes (SQLite has one writer anyway)

	// Rows waiting for the committer (see Queue).
	qmu           sync.Mutex
	queue         []Version
	queued        uint64
	committed     atomic.Uint64
	flushErr      atomic.Pointer[error]
	stop          chan struct{}
	committerDone chan struct{}
}

const schema = `
CREATE TABLE IF NOT EXISTS versions (
	id INTEGER PRIMARY KEY,
	path TEXT NOT NULL,
	time INTEGER NOT NULL,
	kind TEXT NOT NULL,
	hash TEXT,
	size INTEGER NOT NULL DEFAULT 0,
	mode INTEGER NOT NULL DEFAULT 0,
	uid INTEGER NOT NULL DEFAULT 0,
	gid INTEGER NOT NULL DEFAULT 0,
	mtime INTEGER NOT NULL DEFAULT 0,
	actor TEXT NOT NULL DEFAULT '',
	exe TEXT NOT NULL DEFAULT '',
	new_path TEXT NOT NULL DEFAULT '',
	reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS versions_path_time ON versions(path, time);
CREATE INDEX IF NOT EXISTS versions_hash ON versions(hash);
CREATE TABLE IF NOT EXISTS incidents (
	id TEXT PRIMARY KEY,
	opened INTEGER NOT NULL,
	state TEXT NOT NULL,
	body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
INSERT OR IGNORE INTO meta(k, v) VALUES ('format', 'killswitch-vault-1');
`

// Open opens or creates a vault in dir.
func Open(dir string) (*Vault, error) {
	for _, d := range []string{dir, filepath.Join(dir, "blobs"), filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("vault: %w", err)
		}
	}
	// Every blob folder exists from the start, so that the guard can mark
	// them all once to deny other processes access.
	for i := 0; i < 256; i++ {
		if err := os.MkdirAll(filepath.Join(dir, "blobs", fmt.Sprintf("%02x", i)), 0o700); err != nil {
			return nil, fmt.Errorf("vault: %w", err)
		}
	}
	if f, err := os.OpenFile(filepath.Join(dir, "index.db"), os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		return nil, fmt.Errorf("vault %s: %w (a running guard lets only its own killswitch binary open the vault)", dir, err)
	} else {
		f.Close()
	}
	dsn := "file:" + filepath.Join(dir, "index.db") +
		"?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("vault index: %w", err)
	}
	db.SetMaxOpenConns(4)
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("vault index %s: %w", dir, err)
	}
	var format string
	if err := db.QueryRow(`SELECT v FROM meta WHERE k='format'`).Scan(&format); err != nil || format != "killswitch-vault-1" {
		db.Close()
		return nil, fmt.Errorf("vault %s: %w: unknown format %q", dir, ErrCorrupt, format)
	}
	wconn, err := db.Conn(context.Background())
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("vault index: %w", err)
	}
	ins, err := wconn.PrepareContext(context.Background(), `INSERT INTO versions(path,time,kind,hash,size,mode,uid,gid,mtime,actor,exe,new_path,reason)
		VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)`)
	if err != nil {
		wconn.Close()
		db.Close()
		return nil, fmt.Errorf("vault index: %w", err)
	}
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	v := &Vault{dir: dir, db: db, wconn: wconn, insert: ins, enc: enc, stop: make(chan struct{}), committerDone: make(chan struct{})}
	go v.committer()
	v.heads.New = func() any {
		d, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<34))
		return d
	}
	return v, nil
}

// Dir is the vault's directory.
func (v *Vault) Dir() string { return v.dir }

// Close commits what is queued and closes the index.
func (v *Vault) Close() error {
	close(v.stop)
	<-v.committerDone
	err := v.Flush()
	v.insert.Close()
	v.wconn.Close()
	if cerr := v.db.Close(); err == nil {
		err = cerr
	}
	return err
}

func (v *Vault) blobPath(hash string) string {
	return filepath.Join(v.dir, "blobs", hash[:2], hash)
}

// validHash guards every path built from a hash read from the index.
func validHash(h string) bool {
	if len(h) != 64 {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil
}

// smallFile is read whole into memory; larger files stream through a temp file.
const smallFile = 8 << 20

// StoreBlob stores the content read from r (size bytes expected, -1 if
// unknown) and returns its hash. Existing blobs are not rewritten.
func (v *Vault) StoreBlob(r io.Reader, size int64) (hash string, n int64, err error) {
	if size >= 0 && size <= smallFile {
		buf := bytes.NewBuffer(make([]byte, 0, size+1))
		n, err = io.Copy(buf, r)
		if err != nil {
			return "", n, fmt.Errorf("vault: read: %w", err)
		}
		sum := sha256.Sum256(buf.Bytes())
		hash = hex.EncodeToString(sum[:])
		if v.hasBlob(hash) {
			return hash, n, nil
		}
		return hash, n, v.writeBlob(hash, func(w io.Writer) error {
			_, err := w.Write(v.enc.EncodeAll(buf.Bytes(), nil))
			return err
		})
	}
	// Large: compress to a temp file while hashing, then name it.
	tmp, err := os.CreateTemp(filepath.Join(v.dir, "tmp"), "blob-")
	if err != nil {
		return "", 0, fmt.Errorf("vault: %w", err)
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	zw, _ := zstd.NewWriter(tmp, zstd.WithEncoderLevel(zstd.SpeedFastest))
	n, err = io.Copy(io.MultiWriter(h, zw), r)
	if err == nil {
		err = zw.Close()
	}
	if err == nil {
		err = tmp.Close()
	} else {
		tmp.Close()
	}
	if err != nil {
		return "", n, fmt.Errorf("vault: store: %w", err)
	}
	hash = hex.EncodeToString(h.Sum(nil))
	dst := v.blobPath(hash)
	if v.hasBlob(hash) {
		return hash, n, nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return "", n, fmt.Errorf("vault: %w", err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", n, fmt.Errorf("vault: %w", err)
	}
	return hash, n, nil
}

func (v *Vault) writeBlob(hash string, write func(io.Writer) error) error {
	dst := v.blobPath(hash)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return fmt.Errorf("vault: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Join(v.dir, "tmp"), "blob-")
	if err != nil {
		return fmt.Errorf("vault: %w", err)
	}
	err = write(tmp)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("vault: write blob: %w", err)
	}
	return nil
}

// OpenBlob returns a reader of a blob's plaintext. The caller must Close it.
// Reading to EOF verifies the hash; a mismatch returns ErrCorrupt.
func (v *Vault) OpenBlob(hash string) (io.ReadCloser, error) {
	if !validHash(hash) {
		return nil, fmt.Errorf("%w: bad hash %q", ErrCorrupt, hash)
	}
	if raw, err := os.Open(v.rawPath(hash)); err == nil {
		return &verifyingReader{r: raw, f: raw, h: sha256.New(), want: hash}, nil
	}
	f, err := os.Open(v.blobPath(hash))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: %w", hash[:12], ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	zr, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<34))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("blob %s: %w: %w", hash[:12], ErrCorrupt, err)
	}
	return &verifyingReader{r: zr, f: f, done: zr.Close, h: sha256.New(), want: hash}, nil
}

type verifyingReader struct {
	r    io.Reader
	f    *os.File
	done func() // releases the decoder, if any
	h    interface {
		io.Writer
		Sum([]byte) []byte
	}
	want string
}

func (r *verifyingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.h.Write(p[:n])
	if err == io.EOF && hex.EncodeToString(r.h.Sum(nil)) != r.want {
		return n, fmt.Errorf("blob %s: %w: content does not match its hash", r.want[:12], ErrCorrupt)
	}
	if err != nil && err != io.EOF {
		return n, fmt.Errorf("blob %s: %w: %w", r.want[:12], ErrCorrupt, err)
	}
	return n, err
}

func (r *verifyingReader) Close() error {
	if r.done != nil {
		r.done()
	}
	return r.f.Close()
}

// Head returns up to n bytes of a blob's plaintext (unverified: used for
// detection samples, never for restore).
func (v *Vault) Head(hash string, n int) ([]byte, error) {
	if !validHash(hash) {
		return nil, fmt.Errorf("%w: bad hash %q", ErrCorrupt, hash)
	}
	buf := make([]byte, n)
	if raw, err := os.Open(v.rawPath(hash)); err == nil {
		defer raw.Close()
		m, err := io.ReadFull(raw, buf)
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			err = nil
		}
		return buf[:m], err
	}
	f, err := os.Open(v.blobPath(hash))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: %w", hash[:12], ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	d := v.heads.Get().(*zstd.Decoder)
	defer v.heads.Put(d)
	if err := d.Reset(f); err != nil {
		return nil, fmt.Errorf("blob %s: %w: %w", hash[:12], ErrCorrupt, err)
	}
	m, err := io.ReadFull(d, buf)
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		err = nil
	}
	if err != nil {
		err = fmt.Errorf("blob %s: %w: %w", hash[:12], ErrCorrupt, err)
	}
	return buf[:m], err
}

// Add records versions and commits them before it returns.
func (v *Vault) Add(vs ...Version) error {
	v.Queue(vs...)
	return v.Flush()
}

// Queue records versions without waiting: they are committed, in order,
// within CommitEvery or by the next Flush. It returns the sequence number
// of the last row queued; Committed tells when it is on disk.
func (v *Vault) Queue(vs ...Version) uint64 {
	v.qmu.Lock()
	defer v.qmu.Unlock()
	v.queue = append(v.queue, vs...)
	v.queued += uint64(len(vs))
	return v.queued
}

// Committed returns the sequence number of the last committed row.
func (v *Vault) Committed() uint64 { return v.committed.Load() }

// CommitEvery bounds how long a queued row waits for its transaction.
const CommitEvery = 10 * time.Millisecond

func (v *Vault) committer() {
	defer close(v.committerDone)
	t := time.NewTicker(CommitEvery)
	defer t.Stop()
	for {
		select {
		case <-v.stop:
			return
		case <-t.C:
			if err := v.Flush(); err != nil {
				v.flushErr.Store(&err)
			}
		}
	}
}

// Flush commits every queued row in one transaction.
func (v *Vault) Flush() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.qmu.Lock()
	rows, upTo := v.queue, v.queued
	v.queue = nil
	v.qmu.Unlock()
	if len(rows) == 0 {
		return nil
	}
	if err := v.insertRows(rows); err != nil {
		// Put them back in front so that nothing is dropped; a later flush retries.
		v.qmu.Lock()
		v.queue = append(rows, v.queue...)
		v.qmu.Unlock()
		return err
	}
	v.committed.Store(upTo)
	return nil
}

func (v *Vault) insertRows(vs []Version) (err error) {
	ctx := context.Background()
	if _, err := v.wconn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("vault index: %w", err)
	}
	defer func() {
		if err != nil {
			v.wconn.ExecContext(ctx, "ROLLBACK")
		}
	}()
	for _, x := range vs {
		var hash any
		if x.Kind == Content {
			hash = x.Hash
		}
		if _, err := v.insert.ExecContext(ctx, x.Path, x.Time.UnixNano(), string(x.Kind), hash, x.Size, uint32(x.Mode), x.UID, x.GID,
			x.MTime.UnixNano(), x.Actor, x.Exe, x.NewPath, x.Reason); err != nil {
			return fmt.Errorf("vault index: %w", err)
		}
	}
	if _, err := v.wconn.ExecContext(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("vault index: %w", err)
	}
	return nil
}

const cols = `id,path,time,kind,COALESCE(hash,''),size,mode,uid,gid,mtime,actor,exe,new_path,reason`

func scan(rows interface{ Scan(...any) error }) (Version, error) {
	var x Version
	var t, mt int64
	var kind string
	var mode uint32
	err := rows.Scan(&x.ID, &x.Path, &t, &kind, &x.Hash, &x.Size, &mode, &x.UID, &x.GID, &mt, &x.Actor, &x.Exe, &x.NewPath, &x.Reason)
	if err != nil {
		return x, err
	}
	x.Time, x.MTime, x.Kind, x.Mode = time.Unix(0, t), time.Unix(0, mt), Kind(kind), os.FileMode(mode)
	switch x.Kind {
	case Content:
		if !validHash(x.Hash) {
			return x, fmt.Errorf("%w: version %d has hash %q", ErrCorrupt, x.ID, x.Hash)
		}
	case Deleted, Moved:
	default:
		return x, fmt.Errorf("%w: version %d has kind %q", ErrCorrupt, x.ID, kind)
	}
	return x, nil
}

func (v *Vault) query(q string, args ...any) ([]Version, error) {
	if err := v.Flush(); err != nil { // read your own writes
		return nil, err
	}
	rows, err := v.db.Query(q, args...)
	if err != nil {
		return nil, fmt.Errorf("vault index: %w", err)
	}
	defer rows.Close()
	var out []Version
	for rows.Next() {
		x, err := scan(rows)
		if err != nil {
			return out, err
		}
		out = append(out, x)
	}
	return out, rows.Err()
}

// Latest returns the newest row for path at or before t (zero t: now).
func (v *Vault) Latest(path string, t time.Time) (Version, error) {
	if t.IsZero() {
		t = time.Unix(0, 1<<62)
	}
	vs, err := v.query(`SELECT `+cols+` FROM versions WHERE path=? AND time<=? ORDER BY time DESC, id DESC LIMIT 1`, path, t.UnixNano())
	if err != nil {
		return Version{}, err
	}
	if len(vs) == 0 {
		return Version{}, fmt.Errorf("%s: %w", path, ErrNotFound)
	}
	return vs[0], nil
}

// ContentVersion returns the newest content row of path with the given hash.
func (v *Vault) ContentVersion(path, hash string) (Version, error) {
	vs, err := v.query(`SELECT `+cols+` FROM versions WHERE path=? AND hash=? ORDER BY id DESC LIMIT 1`, path, hash)
	if err != nil {
		return Version{}, err
	}
	if len(vs) == 0 {
		// The same bytes under another name (a rename) still carry the metadata.
		vs, err = v.query(`SELECT `+cols+` FROM versions WHERE hash=? ORDER BY id DESC LIMIT 1`, hash)
		if err != nil || len(vs) == 0 {
			return Version{}, fmt.Errorf("%s@%.12s: %w", path, hash, ErrNotFound)
		}
	}
	return vs[0], nil
}

// StateAt returns, for every path under one of roots, its newest row at or
// before t: what the tree looked like then.
func (v *Vault) StateAt(roots []string, t time.Time) ([]Version, error) {
	var out []Version
	for _, root := range roots {
		root = filepath.Clean(root)
		vs, err := v.query(`SELECT `+cols+` FROM versions v WHERE (path=? OR (path>=? AND path<?)) AND time<=?
			AND id=(SELECT id FROM versions w WHERE w.path=v.path AND w.time<=? ORDER BY time DESC, id DESC LIMIT 1)
			ORDER BY path`, root, root+"/", root+"0", t.UnixNano(), t.UnixNano())
		if err != nil {
			return nil, err
		}
		out = append(out, vs...)
	}
	return out, nil
}

// Paths returns every path the index knows under root (for moves of directories).
func (v *Vault) Paths(root string) ([]string, error) {
	rows, err := v.db.Query(`SELECT DISTINCT path FROM versions WHERE path>=? AND path<?`, root+"/", root+"0")
	if err != nil {
		return nil, fmt.Errorf("vault index: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// Under reports whether p is root or inside it.
func Under(p, root string) bool {
	return p == root || strings.HasPrefix(p, strings.TrimSuffix(root, "/")+"/")
}
