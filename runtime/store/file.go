package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// FileName is the name of the embedded store's database file inside the store directory
// (CONNECTOR_STORE_PATH).
const FileName = "ilpfleet.db"

// fileFormat marks a database as an ilpfleet store of this layout.
const fileFormat = "ilpfleet-store/1"

var (
	bucketMeta     = []byte("meta")
	bucketBalances = []byte("balances") // account → committed balance, int64 big-endian
	bucketKV       = []byte("kv")
	keyFormat      = []byte("format")
)

// ErrCorrupted says that the store file is not an ilpfleet store or was damaged.
var ErrCorrupted = errors.New("store: file is corrupted or not an ilpfleet store")

// File is the embedded persistent store: a single bbolt database file in the store directory,
// with every account's state held in memory in front of it.
//
// Reads and limit checks never touch the disk: each account has its own lock, as in Memory.
// Writes are group-committed: one writer goroutine takes every change queued since its last
// transaction and writes them in one bbolt transaction, one fsync, while new changes queue for
// the next one; each caller waits until the transaction holding its change is on disk. There
// is no timer: under load a transaction carries as many changes as arrived during the previous
// fsync, and an idle store writes a single change at once.
//
// What is durable, and when (see PacketScoper): the committed balance of an account, written
// before the call that changed it returns — or, for the operations of a packet (inside
// BeginPacket/EndPacket), before EndPacket returns, and only if the packet's net change is not
// zero. Reservations are not written at all. Recovery is therefore nothing but loading: after a
// crash every account starts with the committed balance of the packets whose EndPacket
// returned, and no reservation.
//
// A failed write (disk full, I/O error) stops the store: every later call fails with an error
// that wraps the first one, since memory and disk may then differ. Restart the process once
// the cause is fixed; the disk holds the last durable state.
type File struct {
	db       *bolt.DB
	path     string
	accounts sync.Map // string → *fileAccount
	fl       *flusher
	closed   atomic.Bool
}

type fileAccount struct {
	mu sync.Mutex
	b  AccountBalance
	// open is the part of b.Balance made by packets whose scope has not ended: it is left out of
	// what is written, so that a crash forgets it.
	open int64
}

var (
	_ Store        = (*File)(nil)
	_ PacketScoper = (*File)(nil)
)

// OpenFile opens (creating it if needed) the embedded store in directory dir. The directory is
// created with mode 0700. It fails with a clear error when dir is not a usable directory, when
// another process holds the store, or when the file is not a valid store (errors.Is
// ErrCorrupted).
func OpenFile(dir string) (*File, error) {
	if dir == "" {
		return nil, errors.New("store: the file store needs a directory (CONNECTOR_STORE_PATH)")
	}
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return nil, fmt.Errorf("store: path %s is not a directory; CONNECTOR_STORE_PATH names a directory that holds %s", dir, FileName)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: cannot create the store directory: %w", err)
	}
	path := filepath.Join(dir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:        2 * time.Second, // the file lock: another process using the same store
		NoFreelistSync: true,            // fewer pages per commit; the freelist is rebuilt on open
		FreelistType:   bolt.FreelistMapType,
	})
	switch {
	case errors.Is(err, bolt.ErrTimeout):
		return nil, fmt.Errorf("store: %s is in use by another process (one connector per store directory)", path)
	case err != nil && os.IsPermission(err):
		return nil, fmt.Errorf("store: cannot open %s: %w", path, err)
	case err != nil:
		return nil, fmt.Errorf("store: cannot open %s: %w (%w)", path, ErrCorrupted, err)
	}
	s := &File{db: db, path: path}
	if err := s.load(); err != nil {
		_ = db.Close()
		return nil, err
	}
	s.fl = newFlusher(db)
	return s, nil
}

// load checks the file's format marker and reads every balance into memory. bbolt may panic
// on a damaged page; that is reported as a corrupted file, not a crash.
func (s *File) load() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("store: reading %s: %w (%v)", s.path, ErrCorrupted, r)
		}
	}()
	err = s.db.Update(func(tx *bolt.Tx) error {
		if err := checkFormat(tx); err != nil {
			return err
		}
		for _, name := range [][]byte{bucketBalances, bucketKV} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketBalances).ForEach(func(k, v []byte) error {
			if len(v) != 8 {
				return fmt.Errorf("balance of account %q has %d bytes, want 8", k, len(v))
			}
			s.accounts.Store(string(k), &fileAccount{b: AccountBalance{Balance: int64(binary.BigEndian.Uint64(v))}})
			return nil
		})
	})
	if err != nil && !errors.Is(err, ErrCorrupted) {
		err = fmt.Errorf("store: reading %s: %w (%w)", s.path, ErrCorrupted, err)
	}
	return err
}

// checkFormat writes the format marker into a new database and checks it in an existing one.
func checkFormat(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		empty := true
		_ = tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
		if !empty {
			return fmt.Errorf("%w: a bbolt database without the ilpfleet format marker", ErrCorrupted)
		}
		m, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		return m.Put(keyFormat, []byte(fileFormat))
	}
	if got := string(meta.Get(keyFormat)); got != fileFormat {
		return fmt.Errorf("%w: format %q, this version reads %q", ErrCorrupted, got, fileFormat)
	}
	return nil
}

// Path is the database file.
func (s *File) Path() string { return s.path }

func (s *File) usable() error {
	if s.closed.Load() {
		return ErrClosed
	}
	return s.fl.failure()
}

func (s *File) account(name string) *fileAccount {
	if a, ok := s.accounts.Load(name); ok {
		return a.(*fileAccount)
	}
	a, _ := s.accounts.LoadOrStore(name, &fileAccount{})
	return a.(*fileAccount)
}

// change applies f to one account and makes the committed balance durable as File's doc says:
// an unchanged balance is not written; inside a packet scope the change is deferred to
// EndPacket; otherwise it is written and waited for.
func (s *File) change(ctx context.Context, name string, f func(AccountBalance) (AccountBalance, error)) (AccountBalance, error) {
	if err := s.usable(); err != nil {
		return AccountBalance{}, err
	}
	a := s.account(name)
	a.mu.Lock()
	old := a.b
	nb, err := f(old)
	if err != nil || nb.Balance == old.Balance {
		if err == nil {
			a.b = nb
		}
		a.mu.Unlock()
		return nb, err
	}
	if sc := scopeFrom(ctx); sc != nil && s.deferChange(a, sc, name, old.Balance, nb.Balance) {
		a.b = nb
		a.mu.Unlock()
		return nb, nil
	}
	durable, ok := Sub(nb.Balance, a.open)
	if !ok {
		a.mu.Unlock()
		return old, ErrOverflow
	}
	a.b = nb
	bt := s.fl.putBalance(name, durable)
	a.mu.Unlock()
	return nb, s.fl.wait(bt)
}

// deferChange records a balance change in the packet's scope; the caller holds a.mu. It
// reports false when the change must be written now instead.
func (s *File) deferChange(a *fileAccount, sc *scope, name string, from, to int64) bool {
	d, ok := Sub(to, from)
	if !ok {
		return false
	}
	open, ok := Add(a.open, d)
	if !ok || !sc.add(name, d) {
		return false
	}
	a.open = open
	return true
}

// BeginPacket implements PacketScoper.
func (s *File) BeginPacket(ctx context.Context) context.Context { return BeginPacket(ctx) }

// EndPacket implements PacketScoper: the packet's net balance changes leave the accounts' open
// parts and are written in the next group commit; it returns once they are on disk.
func (s *File) EndPacket(ctx context.Context) error {
	sc := scopeFrom(ctx)
	if sc == nil {
		return nil
	}
	var last *batch
	for _, d := range sc.end() {
		a := s.account(d.account)
		a.mu.Lock()
		a.open -= d.delta
		if d.delta != 0 {
			last = s.fl.putBalance(d.account, a.b.Balance-a.open)
		}
		a.mu.Unlock()
	}
	if last == nil {
		return nil
	}
	if s.closed.Load() {
		return ErrClosed
	}
	return s.fl.wait(last)
}

// AddWithin implements Balances.
func (s *File) AddWithin(ctx context.Context, account string, delta int64, min, max *int64) (int64, error) {
	b, err := s.change(ctx, account, func(b AccountBalance) (AccountBalance, error) {
		return b.ApplyAdd(account, delta, min, max)
	})
	return b.Balance, err
}

// Reserve implements Balances. Reservations live in memory only.
func (s *File) Reserve(ctx context.Context, account string, amount int64, min *int64) (int64, error) {
	b, err := s.change(ctx, account, func(b AccountBalance) (AccountBalance, error) {
		return b.ApplyReserve(account, amount, min)
	})
	avail, _ := b.Available()
	return avail, err
}

// Commit implements Balances.
func (s *File) Commit(ctx context.Context, account string, amount int64) (int64, error) {
	b, err := s.change(ctx, account, func(b AccountBalance) (AccountBalance, error) { return b.ApplyCommit(amount) })
	return b.Balance, err
}

// Release implements Balances.
func (s *File) Release(ctx context.Context, account string, amount int64) error {
	_, err := s.change(ctx, account, func(b AccountBalance) (AccountBalance, error) { return b.ApplyRelease(amount) })
	return err
}

// Get implements Balances. Balance includes the changes of packets in flight, as Memory's.
func (s *File) Get(_ context.Context, account string) (AccountBalance, error) {
	if err := s.usable(); err != nil {
		return AccountBalance{}, err
	}
	v, ok := s.accounts.Load(account)
	if !ok {
		return AccountBalance{}, nil
	}
	a := v.(*fileAccount)
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.b, nil
}

// Set implements Balances.
func (s *File) Set(ctx context.Context, account string, balance int64) error {
	_, err := s.change(ctx, account, func(b AccountBalance) (AccountBalance, error) {
		b.Balance = balance
		return b, nil
	})
	return err
}

// GetKey implements KV.
func (s *File) GetKey(_ context.Context, key string) ([]byte, error) {
	if err := s.usable(); err != nil {
		return nil, err
	}
	var v []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		if got := tx.Bucket(bucketKV).Get([]byte(key)); got != nil {
			v = append([]byte{}, got...)
		}
		return nil
	})
	if err == nil && v == nil {
		err = ErrNotFound
	}
	return v, err
}

// PutKey implements KV; it returns once the value is on disk.
func (s *File) PutKey(_ context.Context, key string, value []byte) error {
	if err := s.usable(); err != nil {
		return err
	}
	return s.fl.wait(s.fl.putKV(key, append([]byte{}, value...)))
}

// DeleteKey implements KV; it returns once the deletion is on disk.
func (s *File) DeleteKey(_ context.Context, key string) error {
	if err := s.usable(); err != nil {
		return err
	}
	return s.fl.wait(s.fl.putKV(key, nil))
}

// Close writes what is queued and closes the file. Later calls fail with ErrClosed.
func (s *File) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.fl.close()
	return s.db.Close()
}

// flusher is the group-commit writer of a File.
type flusher struct {
	db     *bolt.DB
	mu     sync.Mutex
	cond   *sync.Cond
	cur    *batch // the batch being filled
	stop   bool
	failed error
	exited chan struct{}
	writes atomic.Int64 // transactions written, for tests and benchmarks
}

// batch is the set of changes written by one bbolt transaction.
type batch struct {
	balances map[string]int64
	kv       map[string][]byte // nil value: delete
	done     chan struct{}
	err      error
}

func newBatch() *batch {
	return &batch{balances: make(map[string]int64), kv: make(map[string][]byte), done: make(chan struct{})}
}

func (b *batch) empty() bool { return len(b.balances) == 0 && len(b.kv) == 0 }

func newFlusher(db *bolt.DB) *flusher {
	f := &flusher{db: db, cur: newBatch(), exited: make(chan struct{})}
	f.cond = sync.NewCond(&f.mu)
	go f.run()
	return f
}

// putBalance queues the durable balance of an account. Callers hold the account's lock, so
// that the last value queued for an account is its newest.
func (f *flusher) putBalance(account string, v int64) *batch {
	return f.enqueue(func(b *batch) { b.balances[account] = v })
}

func (f *flusher) putKV(key string, v []byte) *batch {
	return f.enqueue(func(b *batch) { b.kv[key] = v })
}

// enqueue adds a change to the batch being filled and wakes the writer. After close it returns
// a finished batch that says ErrClosed, so that no caller waits for a writer that is gone.
func (f *flusher) enqueue(put func(*batch)) *batch {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stop {
		b := &batch{done: make(chan struct{}), err: ErrClosed}
		close(b.done)
		return b
	}
	b := f.cur
	put(b)
	f.cond.Signal()
	return b
}

// wait returns once b is written. It does not give up on a cancelled context: the change is
// already applied in memory, and a caller told "failed" would not undo it.
func (f *flusher) wait(b *batch) error {
	<-b.done
	if b.err != nil {
		return b.err
	}
	return f.failure()
}

func (f *flusher) failure() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed
}

func (f *flusher) run() {
	defer close(f.exited)
	for {
		f.mu.Lock()
		for f.cur.empty() && !f.stop {
			f.cond.Wait()
		}
		b := f.cur
		if b.empty() {
			f.mu.Unlock()
			return
		}
		f.cur = newBatch()
		f.mu.Unlock()
		b.err = f.write(b)
		f.writes.Add(1)
		if b.err != nil {
			f.mu.Lock()
			if f.failed == nil {
				f.failed = fmt.Errorf("store: stopped after a failed write; memory may be ahead of the disk, restart once the cause is fixed: %w", b.err)
			}
			f.mu.Unlock()
		}
		close(b.done)
	}
}

func (f *flusher) write(b *batch) error {
	return f.db.Update(func(tx *bolt.Tx) error {
		bal, kv := tx.Bucket(bucketBalances), tx.Bucket(bucketKV)
		for k, v := range b.balances {
			if err := bal.Put([]byte(k), binary.BigEndian.AppendUint64(nil, uint64(v))); err != nil {
				return err
			}
		}
		for k, v := range b.kv {
			var err error
			if v == nil {
				err = kv.Delete([]byte(k))
			} else {
				err = kv.Put([]byte(k), v)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// close lets the writer finish what is queued, then stops it.
func (f *flusher) close() {
	f.mu.Lock()
	f.stop = true
	f.cond.Signal()
	f.mu.Unlock()
	<-f.exited
}
