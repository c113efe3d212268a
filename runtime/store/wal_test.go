package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// noTimer keeps the checkpointer's ticker out of a test that runs the checkpoint steps itself.
var noTimer = fileOptions{segment: 64 << 10, maxLog: 1 << 30, every: time.Hour}

func chg(bal map[string]int64, kv map[string][]byte) changes {
	c := newChanges()
	maps.Copy(c.balances, bal)
	maps.Copy(c.kv, kv)
	return c
}

func sameChanges(a, b changes) bool {
	return maps.Equal(a.balances, b.balances) && maps.EqualFunc(a.kv, b.kv, func(x, y []byte) bool {
		return (x == nil) == (y == nil) && bytes.Equal(x, y)
	})
}

// segmentOf writes records 1..len(cs) the way the log does and returns the segment's bytes and
// where each record starts (with the end of the last one appended).
func segmentOf(t *testing.T, cs []changes, size int) (data []byte, starts []int) {
	t.Helper()
	for i, c := range cs {
		starts = append(starts, len(data))
		data = appendRecord(data, uint64(i+1), c)
	}
	starts = append(starts, len(data))
	if len(data) > size {
		t.Fatalf("records take %d bytes, more than the segment's %d", len(data), size)
	}
	return append(data, make([]byte, size-len(data))...), starts
}

var walSample = []changes{
	chg(map[string]int64{"alice": 10, "bob": -10}, nil),
	chg(map[string]int64{"alice": -9223372036854775808}, map[string][]byte{"epoch": []byte("7"), "gone": nil}),
	chg(nil, map[string][]byte{"empty": {}, strings.Repeat("k", 300): bytes.Repeat([]byte{0}, 200)}),
	chg(map[string]int64{"": 9223372036854775807, "carol": 1}, nil),
}

func TestWALRoundTrip(t *testing.T) {
	for n := range len(walSample) + 1 {
		t.Run(fmt.Sprint(n, " records"), func(t *testing.T) {
			data, _ := segmentOf(t, walSample[:n], 4096)
			recs, torn, err := scanSegment(data, 0)
			if err != nil || torn != -1 || len(recs) != n {
				t.Fatalf("scan: %d records, torn %d, %v", len(recs), torn, err)
			}
			for i, r := range recs {
				if r.seq != uint64(i+1) || !sameChanges(r.changes, walSample[i]) {
					t.Fatalf("record %d: seq %d %+v, want %+v", i, r.seq, r.changes, walSample[i])
				}
			}
		})
	}
}

// TestWALTornTail cuts the last record at every byte: the bytes after the cut are the zeros
// of a preallocated segment or the leftovers of its previous use. The records before it are
// kept, the cut one is dropped, and nothing is reported as damage.
func TestWALTornTail(t *testing.T) {
	data, starts := segmentOf(t, walSample, 4096)
	last, end := starts[len(starts)-2], starts[len(starts)-1]
	for _, fill := range []byte{0x00, 0xa5, 0xff} {
		for cut := last; cut <= end; cut++ {
			torn := bytes.Clone(data)
			for i := cut; i < end; i++ {
				torn[i] = fill
			}
			want := len(walSample) - 1
			if bytes.Equal(torn, data) {
				want++ // the "lost" bytes equal the fill (e.g. 0xff of a max balance): no tear
			}
			recs, _, err := scanSegment(torn, 0)
			if err != nil || len(recs) != want {
				t.Fatalf("fill %#x cut at byte %d of %d: %d records, %v", fill, cut-last, end-last, len(recs), err)
			}
		}
	}
}

func TestWALDamage(t *testing.T) {
	data, starts := segmentOf(t, walSample, 4096)
	tests := []struct {
		name    string
		at      int  // byte flipped
		zero    bool // the header at at zeroed instead (a lost sector)
		records int  // kept when not an error
		damaged bool
	}{
		{"payload of the first record", starts[0] + walHeaderSize + 3, false, 0, true},
		{"sequence of the first record", starts[0] + 14, false, 0, true},
		{"checksum of a middle record", starts[1] + 5, false, 0, true},
		{"length of a middle record", starts[1], false, 0, true},
		{"payload of a middle record", starts[2] + walHeaderSize + 1, false, 0, true},
		{"header of a middle record zeroed", starts[2], true, 0, true},
		{"payload of the last record: a torn tail", starts[3] + walHeaderSize + 1, false, 3, false},
		{"header of the last record zeroed", starts[3], true, 3, false},
		{"after the last record", starts[4] + 40, false, 4, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := bytes.Clone(data)
			if tt.zero {
				clear(d[tt.at : tt.at+walHeaderSize])
			} else {
				d[tt.at] ^= 0x10
			}
			recs, _, err := scanSegment(d, 0)
			if tt.damaged != (err != nil) {
				t.Fatalf("err = %v, want damaged %v", err, tt.damaged)
			}
			if !tt.damaged && len(recs) != tt.records {
				t.Fatalf("%d records, want %d", len(recs), tt.records)
			}
		})
	}
}

// TestWALStaleRecords: a reused segment holds the records of its previous use after the new
// ones; their sequences do not follow, so they end the segment.
func TestWALStaleRecords(t *testing.T) {
	old, _ := segmentOf(t, walSample, 4096)
	recent := appendRecord(nil, 41, walSample[1])
	d := bytes.Clone(old)
	copy(d, recent)
	// The new record is shorter than the old first two: what follows is the middle of an old
	// record, then old records 3 and 4 (if the boundary matches). Nothing of it is replayed.
	recs, _, err := scanSegment(d, 0)
	if err != nil || len(recs) != 1 || recs[0].seq != 41 {
		t.Fatalf("%d records, %v", len(recs), err)
	}
}

// writeSegment replaces the content of a store's log segment i.
func writeSegment(t *testing.T, dir string, i int, data []byte) {
	t.Helper()
	if err := os.WriteFile(walPath(filepath.Join(dir, FileName), i), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestFileLogErrors(t *testing.T) {
	dir := t.TempDir()
	s := openFile(t, dir)
	_ = s.Close()
	data, starts := segmentOf(t, walSample, 4096)
	damaged := bytes.Clone(data)
	damaged[starts[1]+walHeaderSize] ^= 1
	gap := bytes.Clone(data[starts[1]:])
	tests := []struct {
		name    string
		seg     []byte
		message string
	}{
		{"damaged in the middle", damaged, "ilpfleet.db.wal.1"},
		{"records missing", gap, "record 1 is missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			writeSegment(t, dir, 1, tt.seg)
			defer writeSegment(t, dir, 1, nil)
			s, err := OpenFile(dir)
			if err == nil {
				_ = s.Close()
				t.Fatal("opened")
			}
			if !errors.Is(err, ErrCorrupted) || !strings.Contains(err.Error(), tt.message) {
				t.Fatalf("err %q: not ErrCorrupted or does not say %q", err, tt.message)
			}
		})
	}
}

// TestFileReplayTornTail: a crash tore the last record; the store opens with the records before
// it, and the torn one is gone for good (a second open does not see it either).
func TestFileReplayTornTail(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openFile(t, dir)
	mustAdd(ctx, s, "alice", 5)
	mustAdd(ctx, s, "alice", 7)
	_ = s.Close() // checkpoints: bbolt holds 12 at sequence 2
	data, starts := segmentOf(t, []changes{
		chg(map[string]int64{"x": 1}, nil), chg(map[string]int64{"x": 2}, nil), // ≤ 2: stale
		chg(map[string]int64{"alice": 20}, nil), chg(map[string]int64{"alice": 30}, nil),
	}, 4096)
	for i := starts[3] + 3; i < starts[4]; i++ {
		data[i] = 0
	}
	writeSegment(t, dir, 0, data)
	for range 2 {
		s = openFile(t, dir)
		if b, _ := s.Get(ctx, "alice"); b.Balance != 20 {
			t.Fatalf("alice %d, want 20", b.Balance)
		}
		if b, _ := s.Get(ctx, "x"); b.Balance != 0 {
			t.Fatalf("a checkpointed record was replayed: x %d", b.Balance)
		}
		s.crash()
		got, err := os.ReadFile(walPath(s.path, 0))
		if err != nil || !bytes.Equal(got[starts[3]:starts[3]+walHeaderSize], make([]byte, walHeaderSize)) {
			t.Fatalf("the torn record was not cut off: %v", err)
		}
	}
}

// TestFileCheckpointCrash crashes at each step of a checkpoint, with writes before it, during
// it (they go to the other segment) and after it, and over two rounds so that a segment is
// reused. Every acknowledged write must be back after the restart, and a second crash and
// restart (a replay of an already replayed log) must change nothing.
func TestFileCheckpointCrash(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name  string
		steps int // 0: no checkpoint; 1: switched; 2: applied to bbolt; 3: ended
	}{
		{"before the switch", 0},
		{"after the switch", 1},
		{"after bbolt's transaction", 2},
		{"after the end", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := openFileWith(dir, noTimer)
			if err != nil {
				t.Fatal(err)
			}
			want := int64(0)
			for round := range 3 {
				mustAdd(ctx, s, "alice", 1)
				if err := s.PutKey(ctx, "k", []byte{byte(round)}); err != nil {
					t.Fatal(err)
				}
				want++
				last := round == 2 // the earlier rounds checkpoint fully, so that segments are reused
				if last && tt.steps == 0 {
					break
				}
				c, seq, _ := s.fl.beginCheckpoint()
				mustAdd(ctx, s, "alice", 10) // lands in the other segment
				want += 10
				if !last || tt.steps >= 2 {
					if err := applyChanges(s.fl.db, c, seq); err != nil {
						t.Fatal(err)
					}
				}
				if !last || tt.steps >= 3 {
					s.fl.endCheckpoint()
				}
			}
			for range 2 {
				s.crash()
				if s, err = openFileWith(dir, noTimer); err != nil {
					t.Fatal(err)
				}
				if b, _ := s.Get(ctx, "alice"); b.Balance != want {
					t.Fatalf("alice %d, want %d", b.Balance, want)
				}
				if v, err := s.GetKey(ctx, "k"); err != nil || !bytes.Equal(v, []byte{2}) {
					t.Fatalf("k = %v %v", v, err)
				}
			}
			_ = s.Close()
		})
	}
}

// TestFileKVThroughCheckpoints: a KV value is served right after its write, while its
// checkpoint runs and after it, and a deletion likewise.
func TestFileKVThroughCheckpoints(t *testing.T) {
	ctx := context.Background()
	s, err := openFileWith(t.TempDir(), noTimer)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	check := func(when string, want []byte) {
		t.Helper()
		v, err := s.GetKey(ctx, "k")
		if want == nil && !errors.Is(err, ErrNotFound) || want != nil && !bytes.Equal(v, want) {
			t.Fatalf("%s: %q %v, want %q", when, v, err, want)
		}
	}
	for _, want := range [][]byte{[]byte("v1"), {}, nil} {
		var err error
		if want == nil {
			err = s.DeleteKey(ctx, "k")
		} else {
			err = s.PutKey(ctx, "k", want)
		}
		if err != nil {
			t.Fatal(err)
		}
		check("in the log", want)
		c, seq, _ := s.fl.beginCheckpoint()
		check("being checkpointed", want)
		if err := applyChanges(s.fl.db, c, seq); err != nil {
			t.Fatal(err)
		}
		s.fl.endCheckpoint()
		check("in bbolt", want)
	}
}

// TestFileLogOutgrowsSegment: with checkpoints held back, records go past the preallocated
// segment; the file grows and nothing is lost.
func TestFileLogOutgrowsSegment(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	opts := fileOptions{segment: 256, maxLog: 1 << 30, every: time.Hour}
	s, err := openFileWith(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		mustAdd(ctx, s, fmt.Sprint("acct", i%7), 1)
	}
	if fi, err := os.Stat(walPath(s.path, 0)); err != nil || fi.Size() <= 256 {
		t.Fatalf("segment did not grow: %v %v", fi.Size(), err)
	}
	s.crash()
	s, err = openFileWith(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 7 {
		want := int64(100 / 7)
		if i < 100%7 {
			want++
		}
		if b, _ := s.Get(ctx, fmt.Sprint("acct", i)); b.Balance != want {
			t.Fatalf("acct%d %d, want %d", i, b.Balance, want)
		}
	}
}

// TestFileCheckpointsUnderLoad: writers race the checkpoints (small log, short interval), then
// a crash: every acknowledged write is back.
func TestFileCheckpointsUnderLoad(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	opts := fileOptions{segment: 4096, maxLog: 512, every: time.Millisecond}
	s, err := openFileWith(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 150
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				mustAdd(ctx, s, fmt.Sprint("w", w), 1)
				if i%10 == 0 {
					if err := s.PutKey(ctx, fmt.Sprint("w", w), []byte(fmt.Sprint(i))); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	if s.fl.checkpoints.Load() == 0 {
		t.Fatal("no checkpoint ran")
	}
	s.crash()
	s, err = openFileWith(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for w := range writers {
		if b, _ := s.Get(ctx, fmt.Sprint("w", w)); b.Balance != each {
			t.Fatalf("w%d %d, want %d", w, b.Balance, each)
		}
		if v, _ := s.GetKey(ctx, fmt.Sprint("w", w)); string(v) != "140" {
			t.Fatalf("kv w%d %q", w, v)
		}
	}
}

// TestFileUpgradesV1: a store written before the log existed opens with its balances.
func TestFileUpgradesV1(t *testing.T) {
	dir := t.TempDir()
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		m, _ := tx.CreateBucket(bucketMeta)
		_ = m.Put(keyFormat, []byte(fileFormatV1))
		b, _ := tx.CreateBucket(bucketBalances)
		_, _ = tx.CreateBucket(bucketKV)
		return b.Put([]byte("alice"), []byte{0, 0, 0, 0, 0, 0, 0, 42})
	})
	_ = db.Close()
	if err != nil {
		t.Fatal(err)
	}
	s := openFile(t, dir)
	defer s.Close()
	if b, _ := s.Get(context.Background(), "alice"); b.Balance != 42 {
		t.Fatalf("alice %d", b.Balance)
	}
}

// walRecords appends cs to a fresh log in dir, with direct writes or not, switching segments
// after rotateAfter records (0: never) as checkpoints would, and returns what a restart would
// replay: the records after the last checkpoint that a switch required (the one before the
// last switch checkpoints the segment the last switch reuses).
func walRecords(t *testing.T, dir string, direct bool, cs []changes, rotateAfter int) ([]walRecord, *wal) {
	t.Helper()
	w, err := openWAL(filepath.Join(dir, "db"), 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	if direct && w.segs[0].direct == nil {
		t.Skipf("the file system of %s has no O_DIRECT (the buffered path is tested without it)", dir)
	}
	if !direct {
		w.dropDirect()
	}
	var ckpt, lastSwitch uint64
	for i, c := range cs {
		if rotateAfter > 0 && i > 0 && i%rotateAfter == 0 {
			ckpt, lastSwitch = lastSwitch, w.rotate()
		}
		if err := w.append(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.close(); err != nil {
		t.Fatal(err)
	}
	w, err = openWAL(filepath.Join(dir, "db"), 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.close() })
	recs, err := w.recover(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	return recs, w
}

// walVaried are records of many sizes: some end inside a block, some on its last byte, some
// span several blocks, so that direct writes rewrite partial blocks and start fresh ones.
func walVaried() []changes {
	var cs []changes
	for i := range 60 {
		key := strings.Repeat("k", 1+(i*397)%1500) // 60 records fit in a 64 KiB segment
		cs = append(cs, chg(map[string]int64{key: int64(i)}, nil))
	}
	return cs
}

// TestWALDirectWrites: records written with direct, synchronous writes are the records a
// restart reads back, the same as written through the page cache — also in a segment reused
// after a switch, over the leftovers of its previous records — and on a fresh segment the
// files are byte for byte the same.
func TestWALDirectWrites(t *testing.T) {
	cs := walVaried()
	for _, rotateAfter := range []int{0, 7} {
		t.Run(fmt.Sprint("switch every ", rotateAfter), func(t *testing.T) {
			bufDir, dirDir := t.TempDir(), t.TempDir()
			want, _ := walRecords(t, bufDir, false, cs, rotateAfter)
			got, _ := walRecords(t, dirDir, true, cs, rotateAfter)
			if rotateAfter == 0 && len(want) != len(cs) || rotateAfter > 0 && len(want) < rotateAfter {
				t.Fatalf("buffered log read back %d of %d records", len(want), len(cs))
			}
			if len(got) != len(want) {
				t.Fatalf("direct log read back %d records, buffered %d", len(got), len(want))
			}
			for i := range want {
				if got[i].seq != want[i].seq || !sameChanges(got[i].changes, want[i].changes) {
					t.Fatalf("record %d: direct seq %d, buffered seq %d", i, got[i].seq, want[i].seq)
				}
			}
			if rotateAfter == 0 {
				for i := range walSegments {
					a, _ := os.ReadFile(walPath(filepath.Join(bufDir, "db"), i))
					b, _ := os.ReadFile(walPath(filepath.Join(dirDir, "db"), i))
					if !bytes.Equal(a, b) {
						t.Errorf("segment %d differs between direct and buffered writes", i)
					}
				}
			}
		})
	}
}

// einvalWriter refuses every write as a file system that took O_DIRECT at open but not its I/O.
type einvalWriter struct{ closed *bool }

func (einvalWriter) WriteAt([]byte, int64) (int, error) { return 0, syscall.EINVAL }
func (e einvalWriter) Close() error                     { *e.closed = true; return nil }

// TestWALDirectRefused: a direct write refused with EINVAL is written through the page cache
// instead, and the log stays on that path.
func TestWALDirectRefused(t *testing.T) {
	dir := t.TempDir()
	w, err := openWAL(filepath.Join(dir, "db"), 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	w.dropDirect()
	var closed bool
	w.segs[0].direct = einvalWriter{&closed}
	for _, c := range walSample {
		if err := w.append(c); err != nil {
			t.Fatalf("append after a refused direct write: %v", err)
		}
	}
	if !closed || w.segs[0].direct != nil {
		t.Errorf("direct writer closed %v, still in use %v", closed, w.segs[0].direct != nil)
	}
	_ = w.close()
	w, err = openWAL(filepath.Join(dir, "db"), 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	recs, err := w.recover(0)
	if err != nil || len(recs) != len(walSample) {
		t.Fatalf("recovered %d of %d records: %v", len(recs), len(walSample), err)
	}
}

// TestMkdirDurable creates a store directory and its missing parents. (That the directories
// holding them are synced — what survives a power loss — cannot be observed without one.)
func TestMkdirDurable(t *testing.T) {
	base := t.TempDir()
	for _, dir := range []string{filepath.Join(base, "a"), filepath.Join(base, "b", "c", "d"), base} {
		if err := mkdirDurable(dir); err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() || (dir != base && fi.Mode().Perm() != 0o700) {
			t.Fatalf("%s: %v %v", dir, fi, err)
		}
	}
	if err := mkdirDurable(filepath.Join(base, "a", "x\x00")); err == nil {
		t.Error("an invalid path was created")
	}
}
