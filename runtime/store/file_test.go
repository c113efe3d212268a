package store

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// crash ends the store as kill -9 would: what the writer has not written yet is lost, no
// checkpoint runs, nothing is flushed, and the file lock is released. What was written to the
// log stays, as it stays in the page cache of a killed process.
func (s *File) crash() {
	s.closed.Store(true)
	f := s.fl
	f.mu.Lock()
	f.cur = newBatch() // dropped: never acknowledged
	f.mu.Unlock()
	f.close(false)
	_ = f.log.close()
	_ = s.db.Close()
}

func openFile(t *testing.T, dir string) *File {
	t.Helper()
	s, err := OpenFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestFileDurableAcrossCrash(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openFile(t, dir)
	if _, err := s.AddWithin(ctx, "alice", 100, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reserve(ctx, "bob", 30, p(-1000)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(ctx, "bob", 20); err != nil {
		t.Fatal(err)
	}
	if err := s.PutKey(ctx, "routing.epoch", []byte("7")); err != nil {
		t.Fatal(err)
	}
	s.crash()

	s = openFile(t, dir)
	defer s.Close()
	if b, _ := s.Get(ctx, "alice"); b != (AccountBalance{Balance: 100}) {
		t.Fatalf("alice after crash: %+v", b)
	}
	// bob's 10 still reserved at the crash is not: its packet died with the process.
	if b, _ := s.Get(ctx, "bob"); b != (AccountBalance{Balance: -20}) {
		t.Fatalf("bob after crash: %+v", b)
	}
	if v, err := s.GetKey(ctx, "routing.epoch"); err != nil || string(v) != "7" {
		t.Fatalf("kv after crash: %q %v", v, err)
	}
}

// TestFilePacketScope checks the recovery rule of a packet's changes: they count only once
// EndPacket returned, a rejected packet writes nothing, and a crash in the middle of a packet
// leaves no trace of it.
func TestFilePacketScope(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name      string
		packet    func(ctx context.Context, s *File) // one packet alice → bob of 10
		end       bool                               // EndPacket before the crash
		alice     int64
		bob       int64
		wantWrite bool
	}{
		{"fulfilled", fulfilled, true, 10, -10, true},
		{"rejected", rejected, true, 0, 0, false},
		{"crash while forwarding", func(ctx context.Context, s *File) {
			mustAdd(ctx, s, "alice", 10)
			mustReserve(ctx, s, "bob", 10)
		}, false, 0, 0, false},
		{"crash after commit before end", fulfilled, false, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openFile(t, dir)
			pctx := s.BeginPacket(ctx)
			tt.packet(pctx, s)
			if b, _ := s.Get(ctx, "alice"); b.Balance != tt.alice && tt.end {
				t.Fatalf("alice in memory: %+v", b)
			}
			before := s.fl.writes.Load()
			if tt.end {
				if err := s.EndPacket(pctx); err != nil {
					t.Fatal(err)
				}
			}
			if wrote := s.fl.writes.Load() > before; wrote != tt.wantWrite {
				t.Fatalf("wrote = %v, want %v", wrote, tt.wantWrite)
			}
			s.crash()
			s = openFile(t, dir)
			defer s.Close()
			a, _ := s.Get(ctx, "alice")
			b, _ := s.Get(ctx, "bob")
			if a != (AccountBalance{Balance: tt.alice}) || b != (AccountBalance{Balance: tt.bob}) {
				t.Fatalf("after restart: alice %+v bob %+v, want %d %d", a, b, tt.alice, tt.bob)
			}
		})
	}
}

func fulfilled(ctx context.Context, s *File) {
	mustAdd(ctx, s, "alice", 10)
	mustReserve(ctx, s, "bob", 10)
	if _, err := s.Commit(ctx, "bob", 10); err != nil {
		panic(err)
	}
}

func rejected(ctx context.Context, s *File) {
	mustAdd(ctx, s, "alice", 10)
	mustReserve(ctx, s, "bob", 10)
	if err := s.Release(ctx, "bob", 10); err != nil {
		panic(err)
	}
	mustAdd(ctx, s, "alice", -10)
}

func mustAdd(ctx context.Context, s Balances, a string, d int64) {
	if _, err := s.AddWithin(ctx, a, d, nil, nil); err != nil {
		panic(err)
	}
}

func mustReserve(ctx context.Context, s Balances, a string, amt int64) {
	if _, err := s.Reserve(ctx, a, amt, nil); err != nil {
		panic(err)
	}
}

// TestFileOpenPacketsNotWritten checks that a non-packet write (an admin change) made while a
// packet is in flight on the same account does not make that packet's change durable.
func TestFileOpenPacketsNotWritten(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openFile(t, dir)
	pctx := s.BeginPacket(ctx)
	mustAdd(pctx, s, "alice", 10) // in flight
	mustAdd(ctx, s, "alice", 5)   // admin, durable now
	if b, _ := s.Get(ctx, "alice"); b.Balance != 15 {
		t.Fatalf("in memory: %+v", b)
	}
	s.crash()
	s = openFile(t, dir)
	defer s.Close()
	if b, _ := s.Get(ctx, "alice"); b.Balance != 5 {
		t.Fatalf("after restart: %+v, want 5", b)
	}
}

// TestFileConcurrentPackets runs many packets at once, ends half of them, crashes, and checks
// that exactly the ended ones count.
func TestFileConcurrentPackets(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openFile(t, dir)
	const n = 200
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			pctx := s.BeginPacket(ctx)
			fulfilled(pctx, s)
			if i%2 == 0 {
				if err := s.EndPacket(pctx); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if w := s.fl.writes.Load(); w >= n/2 {
		t.Logf("no grouping happened: %d writes for %d packets", w, n/2)
	}
	s.crash()
	s = openFile(t, dir)
	defer s.Close()
	a, _ := s.Get(ctx, "alice")
	b, _ := s.Get(ctx, "bob")
	if a.Balance != 10*n/2 || b.Balance != -10*n/2 || a.Pending != 0 || b.Pending != 0 {
		t.Fatalf("after restart: alice %+v bob %+v", a, b)
	}
}

func TestFileOpenErrors(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "plain")
	_ = os.WriteFile(notDir, []byte("x"), 0o600)
	garbage := filepath.Join(dir, "garbage")
	_ = os.MkdirAll(garbage, 0o700)
	_ = os.WriteFile(filepath.Join(garbage, FileName), []byte(strings.Repeat("not a database ", 1000)), 0o600)
	foreign := filepath.Join(dir, "foreign")
	_ = os.MkdirAll(foreign, 0o700)
	db, err := bolt.Open(filepath.Join(foreign, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("other")); return err })
	_ = db.Close()
	badValue := filepath.Join(dir, "badvalue")
	s := openFile(t, badValue)
	_ = s.Close()
	db, _ = bolt.Open(filepath.Join(badValue, FileName), 0o600, nil)
	_ = db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketBalances).Put([]byte("alice"), []byte("12")) })
	_ = db.Close()
	locked := filepath.Join(dir, "locked")
	holder := openFile(t, locked)
	defer holder.Close()

	tests := []struct {
		name    string
		dir     string
		is      error
		message string
	}{
		{"empty path", "", nil, "needs a directory"},
		{"path is a file", notDir, nil, "is not a directory"},
		{"parent is a file", filepath.Join(notDir, "sub"), nil, "cannot create the store directory"},
		{"garbage file", garbage, ErrCorrupted, "corrupted"},
		{"foreign bbolt file", foreign, ErrCorrupted, "format marker"},
		{"bad balance value", badValue, ErrCorrupted, `account "alice" has 2 bytes`},
		{"in use", locked, nil, "in use by another process"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := OpenFile(tt.dir)
			if err == nil {
				_ = s.Close()
				t.Fatal("opened")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("err %v is not %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.message) {
				t.Fatalf("err %q does not say %q", err, tt.message)
			}
		})
	}
}

// TestOpenError: only bbolt's findings about the file's content make a corrupted store; the
// volume's own errors say so and point at the volume, not at deleting the balances.
func TestOpenError(t *testing.T) {
	const path = "/data/ilpfleet.db"
	for _, tt := range []struct {
		name      string
		err       error
		corrupted bool
		message   string
	}{
		{"lock held", berrors.ErrTimeout, false, "in use by another process"},
		{"invalid file", berrors.ErrInvalid, true, "corrupted"},
		{"checksum", berrors.ErrChecksum, true, "corrupted"},
		{"version", berrors.ErrVersionMismatch, true, "corrupted"},
		{"read-only volume", &fs.PathError{Op: "open", Path: path, Err: syscall.EROFS}, false, "check the volume"},
		{"disk full", &fs.PathError{Op: "write", Path: path, Err: syscall.ENOSPC}, false, "no space left"},
		{"permission", &fs.PathError{Op: "open", Path: path, Err: syscall.EACCES}, false, "permission denied"},
	} {
		err := openError(path, tt.err)
		if errors.Is(err, ErrCorrupted) != tt.corrupted || !strings.Contains(err.Error(), tt.message) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: %v; want corrupted %v, with %q and the path", tt.name, err, tt.corrupted, tt.message)
		}
	}
}

// BenchmarkFilePacket is one packet's store work on the embedded store: raise, reserve,
// commit, end (one group-committed write). Run with -cpu or -benchtime; parallelism 16 per CPU
// stands for packets in flight.
func BenchmarkFilePacket(b *testing.B) {
	s, err := OpenFile(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	benchPacket(b, s)
	b.ReportMetric(float64(b.N)/float64(s.fl.writes.Load()), "packets/write")
}

func BenchmarkMemoryPacket(b *testing.B) { benchPacket(b, NewMemory()) }

func benchPacket(b *testing.B, s Store) {
	ctx := context.Background()
	ps, _ := s.(PacketScoper)
	b.SetParallelism(16)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			pctx := ctx
			if ps != nil {
				pctx = ps.BeginPacket(ctx)
			}
			if _, err := s.AddWithin(pctx, "alice", 1, nil, nil); err != nil {
				b.Fatal(err)
			}
			if _, err := s.Reserve(pctx, "bob", 1, nil); err != nil {
				b.Fatal(err)
			}
			if _, err := s.Commit(pctx, "bob", 1); err != nil {
				b.Fatal(err)
			}
			if ps != nil {
				if err := ps.EndPacket(pctx); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

// TestFileStopsAfterFailedWrite: once a write fails, memory may be ahead of the disk, so every
// later operation is refused rather than acknowledged.
func TestFileStopsAfterFailedWrite(t *testing.T) {
	ctx := context.Background()
	s := openFile(t, t.TempDir())
	mustAdd(ctx, s, "alice", 1)
	s.fl.logMu.Lock()
	seg := s.fl.log.segs[s.fl.log.active]
	_ = seg.f.Close() // the disk goes away under the store
	if seg.direct != nil {
		_ = seg.direct.Close()
	}
	s.fl.logMu.Unlock()
	if _, err := s.AddWithin(ctx, "alice", 1, nil, nil); err == nil {
		t.Fatal("a write to a closed database succeeded")
	}
	for _, op := range []func() error{
		func() error { _, err := s.Reserve(ctx, "bob", 1, nil); return err },
		func() error { _, err := s.Get(ctx, "alice"); return err },
		func() error { return s.PutKey(ctx, "k", []byte("v")) },
	} {
		if err := op(); err == nil || !strings.Contains(err.Error(), "stopped after a failed write") {
			t.Fatalf("after a failed write: %v", err)
		}
	}
	s.closed.Store(true)
	s.fl.close(true)
	_ = s.fl.log.close()
	_ = s.db.Close()
}

func TestFileSettlements(t *testing.T) {
	testSettlements(t, func(t *testing.T) Store {
		s := openFile(t, t.TempDir())
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

// TestFileSettlementsDurable: both settlement operations and CreateKey survive a restart,
// after a clean close or a crash, with their keys; a packet in flight on the account when one
// was made does not. Each operation is one log record.
func TestFileSettlementsDurable(t *testing.T) {
	ctx := context.Background()
	for _, crash := range []bool{false, true} {
		name := map[bool]string{false: "close", true: "crash"}[crash]
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			s := openFile(t, dir)
			setBalance(t, s, "out", -30, 0)
			setBalance(t, s, "in", 50, 0)
			if err := s.PutKey(ctx, "in:old", []byte("o")); err != nil {
				t.Fatal(err)
			}
			pctx := s.BeginPacket(ctx)
			mustAdd(pctx, s, "out", 10) // in flight: -20 in memory, never ended
			before := s.fl.writes.Load()
			if amt, err := s.SettleDue(ctx, "out", -10, 5, "out:1"); err != nil || amt != 25 {
				t.Fatalf("SettleDue: %d %v", amt, err)
			}
			ok, err := s.CreditOnce(ctx, "in", -20, "in:1", []byte("v"), Entry{Key: "in:e", Value: []byte("e")}, Entry{Key: "in:old", Value: nil})
			if err != nil || !ok {
				t.Fatalf("CreditOnce: %v %v", ok, err)
			}
			if ok, err := s.CreateKey(ctx, "claim", []byte("c")); err != nil || !ok {
				t.Fatalf("CreateKey: %v %v", ok, err)
			}
			if w := s.fl.writes.Load() - before; w != 3 {
				t.Fatalf("%d log records for three operations, want 3", w)
			}
			if crash {
				s.crash()
			} else if err := s.Close(); err != nil {
				t.Fatal(err)
			}

			s = openFile(t, dir)
			defer s.Close()
			// out: -30 durable, raised by 25 (to 5 with the packet's 10, which died with it).
			if b, _ := s.Get(ctx, "out"); b != (AccountBalance{Balance: -5}) {
				t.Fatalf("out after restart: %+v", b)
			}
			if b, _ := s.Get(ctx, "in"); b != (AccountBalance{Balance: 30}) {
				t.Fatalf("in after restart: %+v", b)
			}
			checkKV(t, s, "out:", map[string]string{"out:1": "25"})
			checkKV(t, s, "in:", map[string]string{"in:1": "v", "in:e": "e"})
			if v, err := s.GetKey(ctx, "claim"); err != nil || string(v) != "c" {
				t.Fatalf("created key after restart: %q %v", v, err)
			}
			if ok, err := s.CreditOnce(ctx, "in", -20, "in:1", []byte("v")); ok || err != nil {
				t.Fatalf("repeated CreditOnce after restart: %v %v", ok, err)
			}
			if b, _ := s.Get(ctx, "in"); b.Balance != 30 {
				t.Fatalf("in after repeated credit: %+v", b)
			}
		})
	}
}

// TestFileSettlementsThroughCheckpoints: CreditOnce finds its key, and Keys lists what it
// should, while the key is in the log, being checkpointed and in bbolt.
func TestFileSettlementsThroughCheckpoints(t *testing.T) {
	ctx := context.Background()
	s, err := openFileWith(t.TempDir(), noTimer)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// k:old is in bbolt; k:1 replaces it in the same write that deletes it.
	if err := s.PutKey(ctx, "k:old", []byte("o")); err != nil {
		t.Fatal(err)
	}
	checkpoint(t, s)
	if ok, err := s.CreditOnce(ctx, "a", 7, "k:1", []byte("v"), Entry{Key: "k:old", Value: nil}); !ok || err != nil {
		t.Fatalf("CreditOnce: %v %v", ok, err)
	}
	check := func(when string) {
		t.Helper()
		if ok, err := s.CreditOnce(ctx, "a", 7, "k:1", []byte("v")); ok || err != nil {
			t.Fatalf("%s: repeated CreditOnce: %v %v", when, ok, err)
		}
		if b, _ := s.Get(ctx, "a"); b.Balance != 7 {
			t.Fatalf("%s: balance %d, want 7", when, b.Balance)
		}
		if keys, err := s.Keys(ctx, "k:"); err != nil || !slices.Equal(keys, []string{"k:1"}) {
			t.Fatalf("%s: keys %q %v", when, keys, err)
		}
	}
	check("in the log")
	c, seq, _ := s.fl.beginCheckpoint()
	check("being checkpointed")
	if err := s.PutKey(ctx, "k:old", []byte("again")); err != nil { // dirty over ckptKV's deletion
		t.Fatal(err)
	}
	if keys, _ := s.Keys(ctx, "k:"); !slices.Equal(keys, []string{"k:1", "k:old"}) {
		t.Fatalf("newer put over a checkpointing deletion: keys %q", keys)
	}
	if err := s.DeleteKey(ctx, "k:old"); err != nil {
		t.Fatal(err)
	}
	if err := applyChanges(s.fl.db, c, seq); err != nil {
		t.Fatal(err)
	}
	s.fl.endCheckpoint()
	check("in bbolt")
	checkpoint(t, s)
	check("all in bbolt")
}

// checkpoint runs one checkpoint's steps in the test's goroutine (the store has noTimer).
func checkpoint(t *testing.T, s *File) {
	t.Helper()
	c, seq, ok := s.fl.beginCheckpoint()
	if !ok {
		return
	}
	if err := applyChanges(s.fl.db, c, seq); err != nil {
		t.Fatal(err)
	}
	s.fl.endCheckpoint()
}

// TestFileConditionalWritesSeeQueuedWrites: a write that depends on what a key holds
// (CreateKey, CreditOnce, DeleteKeyIf), made while a PutKey of the key is queued but not yet in
// the log, decides on the put's value, as if the put came first: not on the value before it,
// which would let it create, credit or delete over a put that then succeeds too.
func TestFileConditionalWritesSeeQueuedWrites(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name        string
		before      string // the key's logged value before the put; "": absent
		op          func(s *File) (bool, error)
		mark        string // the value op writes when it decides to write one
		wantBalance int64  // of account "a"
	}{
		{"CreateKey", "", func(s *File) (bool, error) { return s.CreateKey(ctx, "k", []byte("create")) }, "create", 0},
		{"CreditOnce", "", func(s *File) (bool, error) { return s.CreditOnce(ctx, "a", -5, "k", []byte("credit")) }, "credit", 0},
		{"DeleteKeyIf", "old", func(s *File) (bool, error) { return s.DeleteKeyIf(ctx, "k", []byte("old")) }, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openFile(t, t.TempDir())
			t.Cleanup(func() { _ = s.Close() })
			if tt.before != "" {
				if err := s.PutKey(ctx, "k", []byte(tt.before)); err != nil {
					t.Fatal(err)
				}
			}
			ok, err := s.racePut(t, tt.op, tt.mark)
			if ok || err != nil {
				t.Fatalf("%s over a queued put: %v %v, want false: the key holds the put's value", tt.name, ok, err)
			}
			if v, err := s.GetKey(ctx, "k"); err != nil || string(v) != "put" {
				t.Fatalf("value %q %v, want the put's", v, err)
			}
			if b, _ := s.Get(ctx, "a"); b.Balance != tt.wantBalance {
				t.Fatalf("balance %d, want %d", b.Balance, tt.wantBalance)
			}
		})
	}
}

// racePut queues PutKey(k, "put") and holds it out of the log (the writer waits for logMu)
// while op runs; it lets the log go once op has decided (it returned, wrote mark, or holds
// kvMu waiting for the put, which released it before op began), and returns op's result.
func (s *File) racePut(t *testing.T, op func(*File) (bool, error), mark string) (bool, error) {
	t.Helper()
	ctx := context.Background()
	f := s.fl
	f.logMu.Lock()
	f.mu.Lock()
	queued := f.cur
	f.mu.Unlock()
	put := make(chan error, 1)
	go func() { put <- s.PutKey(ctx, "k", []byte("put")) }()
	// Queued, and kvMu released: from then on only op takes kvMu, so that holding it means op
	// waits for the put, not the put still finishing its queueing.
	eventually(t, "the put to be queued", func() bool {
		if !s.kvMu.TryLock() {
			return false
		}
		defer s.kvMu.Unlock()
		return s.lastKV == queued
	})
	type result struct {
		ok  bool
		err error
	}
	done := make(chan result, 1)
	go func() {
		ok, err := op(s)
		done <- result{ok, err}
	}()
	eventually(t, "the write to decide", func() bool {
		if len(done) > 0 || !s.kvMu.TryLock() {
			return true
		}
		s.kvMu.Unlock()
		f.mu.Lock()
		defer f.mu.Unlock()
		v, ok := f.cur.kv["k"]
		return ok && mark != "" && string(v) == mark
	})
	f.logMu.Unlock()
	if err := <-put; err != nil {
		t.Fatal(err)
	}
	r := <-done
	return r.ok, r.err
}

// TestFileConditionalWritesClosedMeanwhile: a conditional write whose batch fails because the
// store closed between its check that the store is usable and its enqueue reports nothing
// written, not "written" together with ErrClosed.
func TestFileConditionalWritesClosedMeanwhile(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		op   func(s *File) (bool, error)
	}{
		{"CreateKey", func(s *File) (bool, error) { return s.CreateKey(ctx, "new", []byte("v")) }},
		{"CreditOnce", func(s *File) (bool, error) { return s.CreditOnce(ctx, "a", -5, "new", []byte("v")) }},
		{"DeleteKeyIf", func(s *File) (bool, error) { return s.DeleteKeyIf(ctx, "k", []byte("old")) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openFile(t, t.TempDir())
			t.Cleanup(func() { _ = s.Close() })
			if err := s.PutKey(ctx, "k", []byte("old")); err != nil {
				t.Fatal(err)
			}
			s.fl.mu.Lock() // what Close does first: later enqueues get a batch that says ErrClosed
			s.fl.stop = true
			s.fl.mu.Unlock()
			if ok, err := tt.op(s); ok || !errors.Is(err, ErrClosed) {
				t.Fatalf("%s while closing: %v %v, want false and ErrClosed", tt.name, ok, err)
			}
		})
	}
}
