package store

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"unsafe"
)

// The write-ahead log of the embedded store.
//
// A group commit appends one record to the log and makes it durable with one synchronous direct
// write (or, where the file system has no direct I/O, a write and an fdatasync); bbolt
// is brought up to date later, off the packet path, by a checkpoint (file.go). A record holds
// the post-state of every key its batch changed (absolute balances, KV values or deletions), so
// applying a record twice gives the same state as applying it once, and replay needs no care
// about what a checkpoint already applied.
//
// Record layout: payload length (uint32), CRC32C of the sequence and payload (uint32), sequence
// (uint64), then the payload: entries of kind (1 byte), key length (uvarint), key, and a value —
// 8 bytes big-endian for a balance, length (uvarint) and bytes for a KV put, nothing for a KV
// delete. All integers are big-endian. Sequences increase by one per record, across segments and
// restarts.
//
// The log is two segment files, used in turn: a checkpoint switches appends to the other
// segment and applies what the previous one holds to bbolt together with the last sequence it
// holds; the segment is reused (overwritten from its start) only by the switch after that one,
// once its records are in bbolt. Segments are preallocated by writing zeros, so that a
// synchronous append writes the data only: no file size to update, and no unwritten extent
// to convert (which ext4 journals as metadata). A record that does not fit grows the file; that
// is correct, just slower, and the next checkpoint is asked for early.
//
// Recovery reads each segment from its start while records are valid and their sequences
// consecutive. A segment's records end at zeros (never written), at a valid record whose
// sequence does not follow (left from the segment's previous use, already in bbolt), or at an
// invalid record: a torn write from a crash, which is normal and discarded — unless a valid
// record not yet checkpointed starts anywhere after it (or after zeros where a record should
// be), which a torn tail never has (nothing is written after a record before that record's
// synchronous write returned): that is damage in the middle of the log, reported as
// ErrCorrupted.

const (
	walHeaderSize = 16
	walSegments   = 2

	walBalance = 1
	walPut     = 2
	walDelete  = 3
)

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// changes is a set of post-state values, the unit of a log record and of a checkpoint.
type changes struct {
	balances map[string]int64
	kv       map[string][]byte // nil: deleted
}

func newChanges() changes {
	return changes{balances: make(map[string]int64), kv: make(map[string][]byte)}
}

func (c changes) empty() bool { return len(c.balances) == 0 && len(c.kv) == 0 }

// merge copies o into c; o is newer, so its values win.
func (c changes) merge(o changes) {
	maps.Copy(c.balances, o.balances)
	maps.Copy(c.kv, o.kv)
}

type walRecord struct {
	seq uint64
	changes
}

// appendRecord appends the encoded record to buf.
func appendRecord(buf []byte, seq uint64, c changes) []byte {
	start := len(buf)
	buf = append(buf, make([]byte, walHeaderSize)...)
	for k, v := range c.balances {
		buf = append(buf, walBalance)
		buf = binary.AppendUvarint(buf, uint64(len(k)))
		buf = append(buf, k...)
		buf = binary.BigEndian.AppendUint64(buf, uint64(v))
	}
	for k, v := range c.kv {
		kind := byte(walPut)
		if v == nil {
			kind = walDelete
		}
		buf = append(buf, kind)
		buf = binary.AppendUvarint(buf, uint64(len(k)))
		buf = append(buf, k...)
		if v != nil {
			buf = binary.AppendUvarint(buf, uint64(len(v)))
			buf = append(buf, v...)
		}
	}
	h := buf[start : start+walHeaderSize]
	binary.BigEndian.PutUint32(h[0:], uint32(len(buf)-start-walHeaderSize))
	binary.BigEndian.PutUint64(h[8:], seq)
	binary.BigEndian.PutUint32(h[4:], crc32.Checksum(buf[start+8:], crc32c))
	return buf
}

// recordAt returns the record at off in data, and false when there is none that is whole and
// whose checksum matches. zero reports a header of zeros: the never-written end of a segment.
func recordAt(data []byte, off int) (seq uint64, payload []byte, ok, zero bool) {
	if len(data)-off < walHeaderSize {
		return 0, nil, false, true
	}
	h := data[off : off+walHeaderSize]
	n := int(binary.BigEndian.Uint32(h[0:]))
	seq = binary.BigEndian.Uint64(h[8:])
	if n == 0 && seq == 0 && binary.BigEndian.Uint32(h[4:]) == 0 {
		return 0, nil, false, true
	}
	if n > len(data)-off-walHeaderSize {
		return seq, nil, false, false
	}
	end := off + walHeaderSize + n
	if crc32.Checksum(data[off+8:end], crc32c) != binary.BigEndian.Uint32(h[4:]) {
		return seq, nil, false, false
	}
	return seq, data[off+walHeaderSize : end], true, false
}

// decodeChanges decodes a payload whose checksum matched.
func decodeChanges(p []byte) (changes, error) {
	c := newChanges()
	for len(p) > 0 {
		kind := p[0]
		key, rest, err := walBytes(p[1:])
		if err != nil {
			return c, err
		}
		switch kind {
		case walBalance:
			if len(rest) < 8 {
				return c, errors.New("short balance")
			}
			c.balances[string(key)] = int64(binary.BigEndian.Uint64(rest))
			rest = rest[8:]
		case walPut:
			var v []byte
			if v, rest, err = walBytes(rest); err != nil {
				return c, err
			}
			c.kv[string(key)] = append([]byte{}, v...)
		case walDelete:
			c.kv[string(key)] = nil
		default:
			return c, fmt.Errorf("unknown entry kind %d", kind)
		}
		p = rest
	}
	return c, nil
}

// walBytes reads a uvarint length and that many bytes.
func walBytes(p []byte) (b, rest []byte, err error) {
	n, k := binary.Uvarint(p)
	if k <= 0 || n > uint64(len(p)-k) {
		return nil, nil, errors.New("bad length")
	}
	return p[k : k+int(n)], p[k+int(n):], nil
}

// scanSegment returns the run of valid, consecutive records at the start of a segment's data,
// and the offset of a torn record that ends it (-1: none). ckpt is the last sequence bbolt
// holds: a record at or below it is no loss.
func scanSegment(data []byte, ckpt uint64) (recs []walRecord, torn int, err error) {
	off := 0
	for {
		seq, payload, ok, zero := recordAt(data, off)
		if !ok {
			after := ckpt
			if len(recs) > 0 {
				after = max(after, recs[len(recs)-1].seq)
			}
			if acknowledgedAfter(data, off+1, after) {
				return nil, -1, fmt.Errorf("record at offset %d is damaged and followed by records not yet checkpointed", off)
			}
			if zero {
				return recs, -1, nil
			}
			return recs, off, nil
		}
		if len(recs) > 0 && seq != recs[len(recs)-1].seq+1 {
			return recs, -1, nil // left from the segment's previous use
		}
		c, err := decodeChanges(payload)
		if err != nil {
			return nil, -1, fmt.Errorf("record %d at offset %d: %w", seq, off, err)
		}
		recs = append(recs, walRecord{seq: seq, changes: c})
		off += walHeaderSize + len(payload)
	}
}

// acknowledgedAfter reports whether a valid record with a sequence above after starts anywhere
// in data from off on. Nothing is written after a record before that record's synchronous
// write returned, so a torn or zeroed record ends the log only when none does; otherwise the
// log is damaged in the middle (a flipped length or sequence, a lost sector), and taking it
// for a torn end would drop records that were acknowledged. Every offset is tried, since a
// damaged length cannot tell where the next record starts; the sequence is checked before the
// checksum, so zeros and old records cost little.
func acknowledgedAfter(data []byte, off int, after uint64) bool {
	limit := after + uint64(len(data)/walHeaderSize) // more records than that cannot fit
	for o := off; o+walHeaderSize <= len(data); o++ {
		seq := binary.BigEndian.Uint64(data[o+8:])
		if seq <= after || seq > limit {
			continue
		}
		if s, _, ok, _ := recordAt(data, o); ok && s == seq {
			return true
		}
	}
	return false
}

// segment is one log file.
type segment struct {
	f      *os.File
	path   string
	off    int64        // where the next record goes
	direct directWriter // the segment opened for direct, synchronous writes; nil: f and fdatasync
}

// directWriter is a segment's direct descriptor (an *os.File; tests put a failing one).
type directWriter interface {
	WriteAt(b []byte, off int64) (int, error)
	Close() error
}

// wal is the log: two segments, one of them active. Only the store's writer appends, and only
// a checkpoint, holding the same lock, switches segments.
type wal struct {
	base   string // the database file; segment i is base.wal.i
	segs   [walSegments]*segment
	active int
	seq    uint64 // the last sequence written or checkpointed
	buf    []byte
	blocks []byte // a direct write: whole blocks, aligned in memory; between writes it starts
	// with the active segment's bytes from the block that holds off up to off
}

// walPath is the file of segment i of the store at dbPath.
func walPath(dbPath string, i int) string { return fmt.Sprintf("%s.wal.%d", dbPath, i) }

// openWAL opens (creating and preallocating them if needed) the segments of the store at
// dbPath. It does not read them: see recover.
func openWAL(dbPath string, size int64) (*wal, error) {
	w := &wal{base: dbPath}
	created := false
	for i := range w.segs {
		p := walPath(dbPath, i)
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			w.close()
			return nil, fmt.Errorf("store: cannot open the log %s: %w", p, err)
		}
		w.segs[i] = &segment{f: f, path: p}
		grew, err := preallocate(f, size)
		if err != nil {
			w.close()
			return nil, fmt.Errorf("store: cannot preallocate the log %s: %w", p, err)
		}
		created = created || grew
		if d := openDirect(p); d != nil { // nil where the file system has no direct I/O
			w.segs[i].direct = d
		}
	}
	if created {
		// A new file's name must be durable before a record in it is acknowledged.
		if err := syncDir(filepath.Dir(dbPath)); err != nil {
			w.close()
			return nil, fmt.Errorf("store: cannot sync the store directory: %w", err)
		}
	}
	return w, nil
}

// preallocate writes zeros up to size (see the package comment on the log for why not
// fallocate) and reports whether the file grew.
func preallocate(f *os.File, size int64) (bool, error) {
	fi, err := f.Stat()
	if err != nil || fi.Size() >= size {
		return false, err
	}
	zeros := make([]byte, 1<<20)
	for off := fi.Size(); off < size; {
		n := min(int64(len(zeros)), size-off)
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			return false, err
		}
		off += n
	}
	return true, f.Sync()
}

// mkdirDurable creates dir and its missing parents (mode 0700), and syncs the directory that
// holds each one it created: the log syncs the store directory itself, but a power loss soon
// after the first start could otherwise lose the directory's own entry, and every record in it.
func mkdirDurable(dir string) error {
	var created []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		}
		created = append(created, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, d := range created {
		if err := syncDir(filepath.Dir(d)); err != nil {
			return err
		}
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// recover returns the records to replay on top of bbolt's state as of sequence ckpt, in order,
// and discards torn tails. It fails with ErrCorrupted, naming the file, when a segment is
// damaged in the middle or records after ckpt are missing. Afterwards the log continues after
// the highest sequence seen; call reset once the records are checkpointed.
func (w *wal) recover(ckpt uint64) ([]walRecord, error) {
	w.seq = ckpt
	var all []walRecord
	torn := [walSegments]int{}
	for i, s := range w.segs {
		data, err := readAll(s.f)
		if err != nil {
			return nil, fmt.Errorf("store: cannot read the log %s: %w", s.path, err)
		}
		var recs []walRecord
		recs, torn[i], err = scanSegment(data, ckpt)
		if err != nil {
			return nil, fmt.Errorf("store: reading %s: %w (%w)", s.path, ErrCorrupted, err)
		}
		for _, r := range recs {
			w.seq = max(w.seq, r.seq)
			if r.seq > ckpt {
				all = append(all, r)
			}
		}
	}
	slices.SortFunc(all, func(a, b walRecord) int { return cmp.Compare(a.seq, b.seq) })
	for i, r := range all {
		if want := ckpt + 1 + uint64(i); r.seq != want {
			return nil, fmt.Errorf("store: reading %s and %s: %w (record %d is missing from the log; %s holds up to %d)",
				w.segs[0].path, w.segs[1].path, ErrCorrupted, want, w.base, ckpt)
		}
	}
	// Only a log found sound is changed.
	for i, off := range torn {
		if off >= 0 {
			if err := w.segs[i].discard(int64(off)); err != nil {
				return nil, err
			}
		}
	}
	return all, nil
}

func readAll(f *os.File) ([]byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	data := make([]byte, fi.Size())
	n, err := f.ReadAt(data, 0)
	if err == io.EOF {
		err = nil
	}
	return data[:n], err
}

// discard zeroes the header of a torn record, so that the segment visibly ends there.
func (s *segment) discard(off int64) error {
	if _, err := s.f.WriteAt(make([]byte, walHeaderSize), off); err != nil {
		return fmt.Errorf("store: cannot discard the torn end of the log %s: %w", s.path, err)
	}
	return fdatasync(s.f)
}

// reset starts appending at the start of segment 0; every record in the log must be
// checkpointed.
func (w *wal) reset() {
	w.active = 0
	for _, s := range w.segs {
		s.off = 0
	}
}

// append writes c as the next record and returns once it is on disk.
func (w *wal) append(c changes) error {
	s := w.segs[w.active]
	w.buf = appendRecord(w.buf[:0], w.seq+1, c)
	if err := w.write(s, w.buf); err != nil {
		return err
	}
	w.seq++
	s.off += int64(len(w.buf))
	if cap(w.buf) > 1<<20 {
		w.buf = nil // do not keep the buffer of an unusually large batch
	}
	return nil
}

// used is the size of the records in the active segment.
func (w *wal) used() int64 { return w.segs[w.active].off }

// rotate switches appends to the other segment, from its start, and returns the last sequence
// written to the one it leaves. The caller must have checkpointed the other segment's records.
func (w *wal) rotate() uint64 {
	w.active = (w.active + 1) % walSegments
	w.segs[w.active].off = 0
	return w.seq
}

// write puts rec at s.off and returns once it is on disk: with one direct, synchronous write
// where the file system allows it, else a write through the page cache and an fdatasync.
// Direct I/O skips the copy into the page cache and its writeback: on this project's virtio
// disk a sync costs ~85 us and ~40 us of CPU instead of ~100 and ~55 (docs/benchmarks.md).
func (w *wal) write(s *segment, rec []byte) error {
	if s.direct != nil {
		err := w.writeDirect(s, rec)
		if !errors.Is(err, syscall.EINVAL) {
			return err
		}
		// The file system opened the file for direct I/O but refuses the write (nothing was
		// written): the page cache from now on.
		w.dropDirect()
	}
	if _, err := s.f.WriteAt(rec, s.off); err != nil {
		return err
	}
	return fdatasync(s.f)
}

// directBlock is the unit of direct writes: a multiple of every logical block size in use.
const directBlock = 4096

// writeDirect writes the aligned blocks that hold rec at s.off. The bytes before s.off in the
// first block are records already on disk, rewritten unchanged from the front of w.blocks,
// where the last write left them (a torn rewrite leaves each sector old or new, and both hold
// them); the bytes after rec are zeros, as in a fresh segment.
func (w *wal) writeDirect(s *segment, rec []byte) error {
	start := s.off &^ (directBlock - 1)
	head := int(s.off - start)
	end := head + len(rec)
	n := (end + directBlock - 1) &^ (directBlock - 1)
	if cap(w.blocks) < n {
		w.blocks = keepHead(w.blocks, head, max(n, 16*directBlock))
	}
	b := w.blocks[:n]
	copy(b[head:], rec)
	clear(b[end:])
	if _, err := s.direct.WriteAt(b, start); err != nil {
		return err
	}
	last := end &^ (directBlock - 1) // the block the next record starts in
	copy(b, b[last:end])
	if cap(w.blocks) > 1<<20 {
		w.blocks = keepHead(w.blocks, end-last, 16*directBlock) // as w.buf: not kept after an unusually large batch
	}
	return nil
}

// keepHead returns aligned blocks of capacity n that start with b[:head].
func keepHead(b []byte, head, n int) []byte {
	nb := alignedBlocks(n)
	copy(nb, b[:head])
	return nb
}

// alignedBlocks returns n bytes whose address is a multiple of directBlock, as direct I/O
// needs. Go's heap does not move objects.
func alignedBlocks(n int) []byte {
	b := make([]byte, n+directBlock)
	off := int(-uintptr(unsafe.Pointer(&b[0])) & (directBlock - 1))
	return b[off : off+n : off+n]
}

// dropDirect turns direct writes off for every segment.
func (w *wal) dropDirect() {
	for _, s := range w.segs {
		if s != nil && s.direct != nil { // nil: openWAL failed before it
			_ = s.direct.Close()
			s.direct = nil
		}
	}
}

func (w *wal) close() error {
	w.dropDirect()
	var errs []error
	for _, s := range w.segs {
		if s != nil {
			errs = append(errs, s.f.Close())
		}
	}
	return errors.Join(errs...)
}
