package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// FileName is the name of the embedded store's database file inside the store directory
// (CONNECTOR_STORE_PATH). Its write-ahead log is FileName.wal.0 and FileName.wal.1 beside it.
const FileName = "ilpfleet.db"

// fileFormat marks a database as an ilpfleet store of this layout: a bbolt file brought up to
// date by checkpoints from the write-ahead log. fileFormatV1 (no log) is upgraded on open; a
// binary that knows only V1 refuses V2, which is right, since it would ignore the log.
const (
	fileFormat   = "ilpfleet-store/2"
	fileFormatV1 = "ilpfleet-store/1"
)

var (
	bucketMeta     = []byte("meta")
	bucketBalances = []byte("balances") // account → committed balance, int64 big-endian
	bucketKV       = []byte("kv")
	keyFormat      = []byte("format")
	keyLogSeq      = []byte("logseq") // the last log sequence applied, uint64 big-endian
)

// ErrCorrupted says that the store file is not an ilpfleet store or was damaged.
var ErrCorrupted = errors.New("store: file is corrupted or not an ilpfleet store")

// File is the embedded persistent store: a write-ahead log in front of a bbolt database file,
// both in the store directory, with every account's state held in memory in front of them.
//
// Reads and limit checks never touch the disk: each account has its own lock, as in Memory.
// Writes are group-committed: one writer goroutine takes every change queued since its last
// commit and appends them to the log as one record, with one synchronous write, while new
// changes queue for the next one; each caller waits until the record holding its change is on
// disk. There is no timer: under load a commit carries as many changes as arrived during the
// previous one, and an idle store writes a single change at once. A background checkpoint
// applies what the log holds to bbolt in one transaction, never on the packet path: when the
// log passes fileOptions.maxLog, every fileOptions.every, and on Close (wal.go says how the log
// is laid out and read back).
//
// What is durable, and when (see PacketScoper): the committed balance of an account, written
// before the call that changed it returns — or, for the operations of a packet (inside
// BeginPacket/EndPacket), before EndPacket returns, and only if the packet's net change is not
// zero. Reservations are not written at all. Recovery is loading bbolt and replaying the log
// records it does not hold yet: after a crash every account starts with the committed balance of
// the packets whose EndPacket returned, and no reservation.
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
	// kvMu orders the KV writes. Every one is queued under it; a write that depends on what a
	// key holds (CreateKey, CreditOnce, DeleteKeyIf, all through conditionalKV) holds it from
	// its read until its own write is logged, and first waits for lastKV: its read sees only the
	// logged view, so a write still queued when it began would be missed, and one queued
	// meanwhile overwritten.
	kvMu   sync.Mutex
	lastKV *batch // the batch of the last KV write queued (guarded by kvMu); nil: none yet
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

// fileOptions sizes the log. Tests make them small to exercise checkpoints.
type fileOptions struct {
	segment int64         // preallocated size of each of the two log segments
	maxLog  int64         // a checkpoint is started once the active segment holds this much
	every   time.Duration // and at least this often while there is something to checkpoint
}

// defaultFileOptions: a record is tens of bytes per account changed, so 4 MiB segments take
// seconds to fill at full speed; the interval bounds what a restart replays when idle.
var defaultFileOptions = fileOptions{segment: 4 << 20, maxLog: 2 << 20, every: time.Second}

// OpenFile opens (creating it if needed) the embedded store in directory dir. The directory is
// created with mode 0700. It fails with a clear error when dir is not a usable directory, when
// another process holds the store, or when the file or its log is not a valid store (errors.Is
// ErrCorrupted).
func OpenFile(dir string) (*File, error) { return openFileWith(dir, defaultFileOptions) }

func openFileWith(dir string, opts fileOptions) (*File, error) {
	if dir == "" {
		return nil, errors.New("store: the file store needs a directory (CONNECTOR_STORE_PATH)")
	}
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return nil, fmt.Errorf("store: path %s is not a directory; CONNECTOR_STORE_PATH names a directory that holds %s", dir, FileName)
	}
	if err := mkdirDurable(dir); err != nil {
		return nil, fmt.Errorf("store: cannot create the store directory: %w", err)
	}
	path := filepath.Join(dir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:        2 * time.Second, // the file lock, which also guards the log: another process using the same store
		NoFreelistSync: true,            // fewer pages per checkpoint; the freelist is rebuilt on open
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		return nil, openError(path, err)
	}
	s := &File{db: db, path: path}
	log, err := s.open(opts)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	s.fl = newFlusher(db, log, opts)
	return s, nil
}

// openError explains why bbolt could not open the store file. Only bbolt's own findings about
// the file's content mean a corrupted store: a read-only volume, a full disk or a permission is
// the volume's problem, and the remedy must not look like deleting the balances.
func openError(path string, err error) error {
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return fmt.Errorf("store: %s is in use by another process (one connector per store directory)", path)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch),
		errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrInvalidMapping):
		return fmt.Errorf("store: cannot open %s: %w (%w)", path, ErrCorrupted, err)
	}
	return fmt.Errorf("store: cannot open %s (check the volume: writable, space left, permissions): %w", path, err)
}

// open loads bbolt, replays the log on top of it and checkpoints the result, so that the log
// starts empty.
func (s *File) open(opts fileOptions) (*wal, error) {
	ckpt, err := s.load()
	if err != nil {
		return nil, err
	}
	log, err := openWAL(s.path, opts.segment)
	if err != nil {
		return nil, err
	}
	recs, err := log.recover(ckpt)
	if err == nil && len(recs) > 0 {
		err = s.replay(recs, log.seq)
	}
	if err != nil {
		_ = log.close()
		return nil, err
	}
	log.reset()
	return log, nil
}

// replay applies the log's records to memory and to bbolt.
func (s *File) replay(recs []walRecord, seq uint64) error {
	all := newChanges()
	for _, r := range recs {
		all.merge(r.changes)
	}
	for k, v := range all.balances {
		s.account(k).b.Balance = v
	}
	if err := applyChanges(s.db, all, seq); err != nil {
		return fmt.Errorf("store: cannot apply the log to %s: %w", s.path, err)
	}
	return nil
}

// load checks the file's format marker, reads every balance into memory and returns the last
// log sequence applied. bbolt may panic on a damaged page; that is reported as a corrupted
// file, not a crash.
func (s *File) load() (seq uint64, err error) {
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
		if v := tx.Bucket(bucketMeta).Get(keyLogSeq); v != nil {
			if len(v) != 8 {
				return fmt.Errorf("log sequence has %d bytes, want 8", len(v))
			}
			seq = binary.BigEndian.Uint64(v)
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
	return seq, err
}

// checkFormat writes the format marker into a new database, upgrades a V1 one (which has no
// log, so nothing else changes) and checks it in an existing one.
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
	switch got := string(meta.Get(keyFormat)); got {
	case fileFormat:
		return nil
	case fileFormatV1:
		return meta.Put(keyFormat, []byte(fileFormat))
	default:
		return fmt.Errorf("%w: format %q, this version reads %q", ErrCorrupted, got, fileFormat)
	}
}

// applyChanges writes c to bbolt with the last log sequence it covers, in one transaction:
// the checkpoint, and the replay of the log at open.
func applyChanges(db *bolt.DB, c changes, seq uint64) error {
	return db.Update(func(tx *bolt.Tx) error { return putChanges(tx, c, seq) })
}

// putChanges writes c and the log sequence it brings bbolt up to.
func putChanges(tx *bolt.Tx, c changes, seq uint64) error {
	bal, kv := tx.Bucket(bucketBalances), tx.Bucket(bucketKV)
	for k, v := range c.balances {
		if err := bal.Put([]byte(k), binary.BigEndian.AppendUint64(nil, uint64(v))); err != nil {
			return err
		}
	}
	for k, v := range c.kv {
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
	return tx.Bucket(bucketMeta).Put(keyLogSeq, binary.BigEndian.AppendUint64(nil, seq))
}

// Path is the database file.
func (s *File) Path() string { return s.path }

// Commits is the number of group commits (log records, each one synchronous write) since the
// store opened: packets / Commits is how many packets one disk sync carried.
func (s *File) Commits() int64 { return s.fl.writes.Load() }

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
	bt, err := s.setDurable(a, name, nb, nil)
	a.mu.Unlock()
	if err != nil {
		return old, err
	}
	return nb, s.fl.wait(bt)
}

// setDurable sets a's balance to nb and queues its durable part — without the open part of the
// packets in flight, which their EndPacket writes — together with kv, in one batch, so one log
// record holds them all. The caller holds a.mu, so that the last value queued for an account
// is its newest.
func (s *File) setDurable(a *fileAccount, name string, nb AccountBalance, kv map[string][]byte) (*batch, error) {
	durable, ok := Sub(nb.Balance, a.open)
	if !ok {
		return nil, ErrOverflow
	}
	a.b = nb
	return s.fl.enqueue(func(b *batch) {
		b.balances[name] = durable
		maps.Copy(b.kv, kv)
	}), nil
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
	ds := slices.DeleteFunc(sc.end(), func(d scopeDelta) bool { return d.delta == 0 })
	if len(ds) == 0 {
		return nil
	}
	// One enqueue for all of the packet's accounts (one turn of the flusher's lock, not one per
	// account), made with their locks held, as setDurable's are, so that the last value queued
	// for an account is its newest. Locked in name order: no two packets wait for each other.
	slices.SortFunc(ds, func(x, y scopeDelta) int { return strings.Compare(x.account, y.account) })
	var room [4]*fileAccount
	as := room[:0]
	for _, d := range ds {
		a := s.account(d.account)
		a.mu.Lock()
		a.open -= d.delta
		as = append(as, a)
	}
	last := s.fl.enqueue(func(b *batch) {
		for i, d := range ds {
			b.balances[d.account] = as[i].b.Balance - as[i].open
		}
	})
	for _, a := range as {
		a.mu.Unlock()
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

// GetKey implements KV. A value whose log record is not yet checkpointed is served from the
// writer's view of the log; any other from bbolt.
func (s *File) GetKey(_ context.Context, key string) ([]byte, error) {
	if err := s.usable(); err != nil {
		return nil, err
	}
	v, err := s.lookup(key)
	if err == nil && v == nil {
		err = ErrNotFound
	}
	return v, err
}

// lookup returns a copy of key's value, or nil when absent. The logged view is asked first: a
// checkpoint only moves values from it to bbolt, so a value missed there is in bbolt by then.
func (s *File) lookup(key string) ([]byte, error) {
	if v, ok := s.fl.logged(key); ok {
		if v == nil {
			return nil, nil
		}
		return append([]byte{}, v...), nil
	}
	var v []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		if got := tx.Bucket(bucketKV).Get([]byte(key)); got != nil {
			v = append([]byte{}, got...)
		}
		return nil
	})
	return v, err
}

// PutKey implements KV; it returns once the value is on disk.
func (s *File) PutKey(_ context.Context, key string, value []byte) error {
	if err := s.usable(); err != nil {
		return err
	}
	return s.fl.wait(s.queueKV(key, append([]byte{}, value...)))
}

// queueKV queues a KV write that depends on nothing read (nil v: a deletion), under kvMu but
// without holding it until the write is logged: plain writes still share group commits.
func (s *File) queueKV(key string, v []byte) *batch {
	s.kvMu.Lock()
	defer s.kvMu.Unlock()
	s.lastKV = s.fl.putKV(key, v)
	return s.lastKV
}

// settledKV waits until every KV write queued so far is logged, so that lookup sees it; the
// caller holds kvMu, so no other can be queued meanwhile. It costs at most one group commit,
// and nothing when no KV write is in flight.
func (s *File) settledKV() error {
	if s.lastKV == nil {
		return nil
	}
	return s.fl.wait(s.lastKV)
}

// conditionalKV makes a KV write that depends on what the store holds (CreateKey, CreditOnce,
// DeleteKeyIf) as File's kvMu says: decide runs under kvMu once every KV write queued before
// it is logged, reads what it needs, and either queues its write and returns the batch, or
// returns a nil batch to write nothing; kvMu is held until that batch is logged. It reports
// whether the write was made: false, with the error, when the batch failed (the store closed
// meanwhile, or a log write failed).
func (s *File) conditionalKV(decide func() (*batch, error)) (bool, error) {
	if err := s.usable(); err != nil {
		return false, err
	}
	s.kvMu.Lock()
	defer s.kvMu.Unlock()
	if err := s.settledKV(); err != nil {
		return false, err
	}
	bt, err := decide()
	if bt == nil || err != nil {
		return false, err
	}
	s.lastKV = bt
	if err := s.fl.wait(bt); err != nil {
		return false, err
	}
	return true, nil
}

// CreateKey implements KV; it returns once the value is on disk (see conditionalKV).
func (s *File) CreateKey(_ context.Context, key string, value []byte) (bool, error) {
	return s.conditionalKV(func() (*batch, error) {
		if v, err := s.lookup(key); err != nil || v != nil {
			return nil, err
		}
		return s.fl.putKV(key, append([]byte{}, value...)), nil
	})
}

// DeleteKey implements KV; it returns once the deletion is on disk.
func (s *File) DeleteKey(_ context.Context, key string) error {
	if err := s.usable(); err != nil {
		return err
	}
	return s.fl.wait(s.queueKV(key, nil))
}

// DeleteKeyIf implements KV; it returns once the deletion is on disk (see conditionalKV).
func (s *File) DeleteKeyIf(_ context.Context, key string, was []byte) (bool, error) {
	return s.conditionalKV(func() (*batch, error) {
		cur, err := s.lookup(key)
		if err != nil || !deleteGuard(key, was).guardHolds(cur, cur != nil) {
			return nil, err
		}
		return s.fl.putKV(key, nil), nil
	})
}

// SettleDue implements Settlements: the new durable balance and the key go into one batch, so
// one log record holds both. The key is queued under kvMu, as every KV write (see File).
func (s *File) SettleDue(_ context.Context, account string, threshold, settleTo int64, key string) (int64, error) {
	if err := s.usable(); err != nil {
		return 0, err
	}
	bt, amount, err := s.settle(account, threshold, settleTo, key)
	if bt == nil || err != nil {
		return 0, err
	}
	return amount, s.fl.wait(bt)
}

// settle applies SettleDue's change and queues it; nil batch: not due. Lock order: kvMu,
// then the account's lock (as CreditOnce).
func (s *File) settle(account string, threshold, settleTo int64, key string) (*batch, int64, error) {
	s.kvMu.Lock()
	defer s.kvMu.Unlock()
	a := s.account(account)
	a.mu.Lock()
	defer a.mu.Unlock()
	amount, due, err := settleAmount(a.b.Balance, threshold, settleTo)
	if !due || err != nil {
		return nil, 0, err
	}
	nb := a.b
	nb.Balance = settleTo
	bt, err := s.setDurable(a, account, nb, map[string][]byte{key: settleValue(amount)})
	if err != nil {
		return nil, 0, err
	}
	s.lastKV = bt
	return bt, amount, nil
}

// CreditOnce implements Settlements: the balance, key and entries go into one batch, so one log
// record holds them all (see conditionalKV).
func (s *File) CreditOnce(_ context.Context, account string, delta int64, key string, value []byte, entries ...Entry) (bool, error) {
	return s.conditionalKV(func() (*batch, error) {
		if v, err := s.lookup(key); err != nil || v != nil {
			return nil, err
		}
		if err := s.checkGuards(entries); err != nil {
			return nil, err
		}
		return s.credit(account, delta, key, value, entries)
	})
}

// checkGuards is ErrConflict if a guarded entry's key changed; the caller holds kvMu.
func (s *File) checkGuards(entries []Entry) error {
	for _, e := range entries {
		if !e.Guard {
			continue
		}
		cur, err := s.lookup(e.Key)
		if err != nil {
			return err
		}
		if !e.guardHolds(cur, cur != nil) {
			return ErrConflict
		}
	}
	return nil
}

// credit applies CreditOnce's change to the account and queues it; the caller holds kvMu.
func (s *File) credit(account string, delta int64, key string, value []byte, entries []Entry) (*batch, error) {
	kv := make(map[string][]byte, 1+len(entries))
	kv[key] = append([]byte{}, value...)
	for _, e := range entries {
		var v []byte // nil: deleted
		if e.Value != nil {
			v = append([]byte{}, e.Value...)
		}
		kv[e.Key] = v
	}
	a := s.account(account)
	a.mu.Lock()
	defer a.mu.Unlock()
	nb, err := a.b.ApplyAdd(account, delta, nil, nil)
	if err != nil {
		return nil, err
	}
	return s.setDurable(a, account, nb, kv)
}

// Keys implements Settlements: bbolt's keys with the logged view on top of them. The logged
// view is taken first, for the reason lookup gives.
func (s *File) Keys(_ context.Context, prefix string) ([]string, error) {
	if err := s.usable(); err != nil {
		return nil, err
	}
	logged := s.fl.loggedPrefix(prefix)
	var keys []string
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketKV).Cursor()
		for k, _ := c.Seek([]byte(prefix)); k != nil && strings.HasPrefix(string(k), prefix); k, _ = c.Next() {
			if _, ok := logged[string(k)]; !ok {
				keys = append(keys, string(k))
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for k, v := range logged {
		if v != nil {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys, nil
}

// Close writes what is queued, checkpoints the log into bbolt and closes the files. Later calls
// fail with ErrClosed.
func (s *File) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.fl.close(true)
	return errors.Join(s.fl.failure(), s.fl.log.close(), s.db.Close())
}

// flusher is the group-commit writer of a File and its checkpointer.
type flusher struct {
	db   *bolt.DB
	log  *wal
	opts fileOptions

	mu     sync.Mutex
	cond   *sync.Cond
	cur    *batch // the batch being filled
	stop   bool
	failed atomic.Pointer[error] // set once, by fail
	exited chan struct{}
	writes atomic.Int64 // log records written, for tests and benchmarks

	// logMu is held by the writer for a whole commit and by a checkpoint to switch segments.
	logMu sync.Mutex
	dirty changes // in the log since the last switch, not yet in bbolt

	// viewMu guards the KV values that are in the log but maybe not in bbolt: dirty.kv and
	// ckptKV, the part a running checkpoint is applying.
	viewMu sync.Mutex
	ckptKV map[string][]byte

	kick        chan struct{} // asks for a checkpoint now
	quit        chan bool     // stops the checkpointer; true: after a last checkpoint
	ckptExited  chan struct{}
	checkpoints atomic.Int64 // checkpoints applied, for tests
}

// batch is the set of changes written by one log record.
type batch struct {
	changes
	done chan struct{}
	err  error
}

func newBatch() *batch { return &batch{changes: newChanges(), done: make(chan struct{})} }

func newFlusher(db *bolt.DB, log *wal, opts fileOptions) *flusher {
	f := &flusher{
		db: db, log: log, opts: opts, cur: newBatch(), exited: make(chan struct{}), dirty: newChanges(),
		kick: make(chan struct{}, 1), quit: make(chan bool, 1), ckptExited: make(chan struct{}),
	}
	f.cond = sync.NewCond(&f.mu)
	go f.run()
	go f.checkpointer()
	return f
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

// failure is the error that stopped the store, or nil. Every balance change asks: an atomic
// load, not f.mu, which the packets and the writer contend for.
func (f *flusher) failure() error {
	if e := f.failed.Load(); e != nil {
		return *e
	}
	return nil
}

// fail stops the store after a failed log write or checkpoint. The first failure stays.
func (f *flusher) fail(err error) {
	e := fmt.Errorf("store: stopped after a failed write; memory may be ahead of the disk, restart once the cause is fixed: %w", err)
	f.failed.CompareAndSwap(nil, &e)
}

// gatherRounds is how many times the writer yields its processor before it takes a batch. The
// packets that the last commit woke up, and the requests behind them, add their changes
// meanwhile: at 100 packets in flight a commit carries ~25 packets instead of ~14, so that
// each disk sync (~100 us, half of it CPU time on this project's virtio test disk) is shared
// by more packets. When nothing else is runnable a yield returns at once: a lone packet is
// not delayed. More rounds did not make larger batches (docs/benchmarks.md).
const gatherRounds = 2

func (f *flusher) run() {
	defer close(f.exited)
	for {
		f.mu.Lock()
		for f.cur.empty() && !f.stop {
			f.cond.Wait()
		}
		for range gatherRounds {
			f.mu.Unlock()
			runtime.Gosched()
			f.mu.Lock()
		}
		b := f.cur
		if b.empty() {
			f.mu.Unlock()
			return
		}
		f.cur = newBatch()
		f.mu.Unlock()
		b.err = f.commit(b)
		f.writes.Add(1)
		if b.err != nil {
			f.fail(b.err)
		}
		close(b.done)
	}
}

// commit appends b to the log and adds it to what the next checkpoint applies.
func (f *flusher) commit(b *batch) error {
	if err := f.failure(); err != nil {
		return err // the log may be missing a record: nothing after it may be acknowledged
	}
	f.logMu.Lock()
	defer f.logMu.Unlock()
	if err := f.log.append(b.changes); err != nil {
		return err
	}
	maps.Copy(f.dirty.balances, b.balances)
	if len(b.kv) > 0 {
		f.viewMu.Lock()
		maps.Copy(f.dirty.kv, b.kv)
		f.viewMu.Unlock()
	}
	if f.log.used() >= f.opts.maxLog {
		select {
		case f.kick <- struct{}{}:
		default: // already asked
		}
	}
	return nil
}

// logged returns a KV value (nil: deleted) that is in the log but maybe not in bbolt.
func (f *flusher) logged(key string) ([]byte, bool) {
	f.viewMu.Lock()
	defer f.viewMu.Unlock()
	if v, ok := f.dirty.kv[key]; ok {
		return v, true
	}
	v, ok := f.ckptKV[key]
	return v, ok
}

// loggedPrefix returns the logged view's values (nil: deleted) of the keys that start with
// prefix: a running checkpoint's, overridden by the newer dirty ones.
func (f *flusher) loggedPrefix(prefix string) map[string][]byte {
	f.viewMu.Lock()
	defer f.viewMu.Unlock()
	out := make(map[string][]byte)
	for _, m := range []map[string][]byte{f.ckptKV, f.dirty.kv} {
		for k, v := range m {
			if strings.HasPrefix(k, prefix) {
				out[k] = v
			}
		}
	}
	return out
}

// checkpointer runs the checkpoints, one at a time, so that a segment is reused only after
// the checkpoint of its records ended.
func (f *flusher) checkpointer() {
	defer close(f.ckptExited)
	t := time.NewTicker(f.opts.every)
	defer t.Stop()
	for {
		select {
		case last := <-f.quit:
			if last {
				f.checkpoint()
			}
			return
		case <-t.C:
		case <-f.kick:
		}
		f.checkpoint()
	}
}

// checkpoint applies what the log holds to bbolt. A failure stops the store: the log would
// otherwise grow without bound.
func (f *flusher) checkpoint() {
	if f.failure() != nil {
		return // the log keeps what bbolt lacks; a restart replays it
	}
	c, seq, ok := f.beginCheckpoint()
	if !ok {
		return
	}
	if err := applyChanges(f.db, c, seq); err != nil {
		f.fail(fmt.Errorf("checkpoint: %w", err))
		return
	}
	f.endCheckpoint()
}

// beginCheckpoint switches the log to its other segment and takes what the left one holds
// (with the previous segments' records, already in bbolt, nothing more). ok is false, and
// nothing happens, when there is nothing to take.
func (f *flusher) beginCheckpoint() (c changes, seq uint64, ok bool) {
	f.logMu.Lock()
	defer f.logMu.Unlock()
	c = f.dirty
	if c.empty() {
		return c, 0, false
	}
	seq = f.log.rotate()
	f.viewMu.Lock()
	f.dirty, f.ckptKV = newChanges(), c.kv
	f.viewMu.Unlock()
	return c, seq, true
}

// endCheckpoint: bbolt now serves the checkpointed KV values.
func (f *flusher) endCheckpoint() {
	f.viewMu.Lock()
	f.ckptKV = nil
	f.viewMu.Unlock()
	f.checkpoints.Add(1)
}

// close lets the writer finish what is queued, then stops it and the checkpointer, which
// checkpoints a last time if last.
func (f *flusher) close(last bool) {
	f.mu.Lock()
	f.stop = true
	f.cond.Signal()
	f.mu.Unlock()
	<-f.exited
	f.quit <- last
	<-f.ckptExited
}
