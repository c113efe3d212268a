package engine

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/redislog"
	"github.com/redis/go-redis/v9"
	"github.com/shopspring/decimal"
)

// DefaultRedisPrefix prefixes every key of the Redis store.
const DefaultRedisPrefix = "ilpfleet:se:"

// Redis is a Store in Redis: queued settlements, idempotency records and queued credits
// survive a restart of the engine (and, with appendonly, of Redis). One engine process per
// prefix, always: a process takes the settlement attempts it finds in the store at start as
// left by a stopped one, so a second process would retry (or give up) the Settle the first
// is still running, and both would resend the same credits. The store enforces it with a
// lease (see redis_lease.go): OpenRedis waits while another process holds the prefix, Close
// releases it, and a process that loses it fails (Failed).
//
// Keys: <prefix>accounts (set), <prefix>queue:<id> (list of decimal strings, summed when
// taken, because Lua cannot add decimals exactly), <prefix>left:<id> (incoming amount below
// one unit), <prefix>credits (hash key → Credit JSON), <prefix>idem:<key> (Record JSON, with
// a TTL), <prefix>seen:<len(account)>:<account>:<settlement id> (a settlement id credited,
// with a TTL), <prefix>attempt:<id> (Attempt JSON: the settlement in progress or of unknown
// outcome), <prefix>lease (the token of the process using the prefix, with a TTL).
type Redis struct {
	c      *redis.Client
	prefix string

	log      *slog.Logger
	lease    time.Duration
	leaseKey string
	token    string        // this process's, in the lease while it holds it
	lost     chan struct{} // closed when the lease is lost
	lostOnce sync.Once
	// validUntil (Unix nanoseconds) is when this process stops counting on its lease unless
	// a renewal succeeds first: the send time of the last command that set its TTL, plus the
	// TTL less leaseMargin, so always before Redis may expire it (see Err).
	validUntil atomic.Int64
	closing    chan struct{} // closed by Close: the renewal stops
	renewed    chan struct{} // closed when the renewal stopped
	closeOnce  sync.Once
	closeErr   error
}

var (
	_ Store       = (*Redis)(nil)
	_ QueueReader = (*Redis)(nil)
)

// queueScript is QueueSettlement in one atomic step: the record is checked (and kept
// IdempotencyTTL longer if there), then the account, then both are written.
var queueScript = redis.NewScript(leaseCheck + `
if ARGV[3] ~= '' then
  local prev = redis.call('GET', KEYS[3])
  if prev then
    redis.call('EXPIRE', KEYS[3], ARGV[4])
    return {2, prev}
  end
end
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then return {0} end
if ARGV[3] ~= '' then redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[4]) end
redis.call('RPUSH', KEYS[2], ARGV[2])
return {1}
`)

// OpenRedis connects to url (redis://[user:password@]host:port[/db]), checks the connection
// and takes the prefix's lease, waiting while another process holds it, until ctx ends;
// prefix "" is DefaultRedisPrefix. Close it with Close, after Server.Close.
func OpenRedis(ctx context.Context, url, prefix string) (*Redis, error) {
	return OpenRedisWith(ctx, url, prefix, RedisOptions{})
}

// OpenRedisWith is OpenRedis with options.
func OpenRedisWith(ctx context.Context, url, prefix string, o RedisOptions) (*Redis, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("settlement engine: redis url: %w", err)
	}
	if prefix == "" {
		prefix = DefaultRedisPrefix
	}
	// Context deadlines bound the reads too: a lease renewal that Redis does not answer must
	// give up within its own deadline, not the client's read timeout and retries.
	opt.ContextTimeoutEnabled = true
	c := redis.NewClient(opt)
	if err := c.Ping(ctx).Err(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("settlement engine: redis %s: %w", opt.Addr, err)
	}
	r := &Redis{c: c, prefix: prefix, log: cmp.Or(o.Log, slog.Default()), lease: cmp.Or(o.Lease, DefaultRedisLease),
		leaseKey: prefix + "lease", token: leaseToken(),
		lost: make(chan struct{}), closing: make(chan struct{}), renewed: make(chan struct{})}
	redislog.Use(r.log)
	if err := r.acquire(ctx); err != nil {
		_ = c.Close()
		return nil, err
	}
	go r.keepLease()
	return r, nil
}

// Close releases the lease, if it is still this process's, and closes the connections. The
// next process on the prefix starts then: close the Server first.
func (r *Redis) Close() error {
	r.closeOnce.Do(func() { r.closeErr = errors.Join(r.release(), r.c.Close()) })
	return r.closeErr
}

func (r *Redis) key(parts ...string) string { return r.prefix + strings.Join(parts, "") }

// createScript is CreateAccount, fenced by the lease.
var createScript = redis.NewScript(leaseCheck + `return redis.call('SADD', KEYS[1], ARGV[1])`)

// CreateAccount implements Store.
func (r *Redis) CreateAccount(ctx context.Context, id string) (bool, error) {
	n, err := r.runFenced(ctx, createScript, []string{r.key("accounts")}, id).Int()
	return n == 1, err
}

// deleteScript is DeleteAccount in one atomic step, fenced by the lease.
var deleteScript = redis.NewScript(leaseCheck + `
redis.call('SREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2], KEYS[3])
return 1`)

// DeleteAccount implements Store.
func (r *Redis) DeleteAccount(ctx context.Context, id string) error {
	return r.runFenced(ctx, deleteScript, []string{r.key("accounts"), r.key("queue:", id), r.key("attempt:", id)}, id).Err()
}

// HasAccount implements Store.
func (r *Redis) HasAccount(ctx context.Context, id string) (bool, error) {
	if err := r.Err(); err != nil {
		return false, err
	}
	return r.c.SIsMember(ctx, r.key("accounts"), id).Result()
}

// Accounts implements Store.
func (r *Redis) Accounts(ctx context.Context) ([]string, error) {
	if err := r.Err(); err != nil {
		return nil, err
	}
	return r.c.SMembers(ctx, r.key("accounts")).Result()
}

// QueueSettlement implements Store.
func (r *Redis) QueueSettlement(ctx context.Context, id string, amount decimal.Decimal, rec *Record) (*Record, error) {
	recJSON, idemKey := "", r.key("idem:")
	if rec != nil {
		b, err := json.Marshal(rec)
		if err != nil {
			return nil, err
		}
		recJSON, idemKey = string(b), r.key("idem:", rec.Key)
	}
	ttl := strconv.Itoa(int(IdempotencyTTL.Seconds()))
	res, err := r.runFenced(ctx, queueScript, []string{r.key("accounts"), r.key("queue:", id), idemKey},
		id, amount.String(), recJSON, ttl).Slice()
	if err != nil {
		return nil, err
	}
	switch res[0].(int64) {
	case 0:
		return nil, ErrNoAccount
	case 2:
		var prev Record
		if err := json.Unmarshal([]byte(res[1].(string)), &prev); err != nil {
			return nil, fmt.Errorf("settlement engine: idempotency record %q: %w", rec.Key, err)
		}
		return &prev, nil
	}
	return nil, nil
}

// StartAttempt implements Store. Optimistic (WATCH), as QueueCredit: the queue is summed
// here, because Lua cannot add decimals exactly, and taken only if it did not change
// meanwhile, nor the lease (a renewal makes it go round again). A queue that cannot be read
// is left as it is.
func (r *Redis) StartAttempt(ctx context.Context, id, attemptID string) (*Attempt, error) {
	for range maxWatchRetries {
		a, err := r.startAttemptOnce(ctx, id, attemptID)
		if !errors.Is(err, redis.TxFailedErr) {
			return a, err
		}
	}
	return nil, fmt.Errorf("settlement engine: settlement of %s: too much contention", id)
}

func (r *Redis) startAttemptOnce(ctx context.Context, id, attemptID string) (a *Attempt, err error) {
	if err := r.Err(); err != nil {
		return nil, err
	}
	qk, ak := r.key("queue:", id), r.key("attempt:", id)
	err = r.c.Watch(ctx, func(tx *redis.Tx) error {
		if err := r.checkLease(ctx, tx); err != nil {
			return err
		}
		switch n, err := tx.Exists(ctx, ak).Result(); {
		case err != nil:
			return err
		case n > 0:
			return ErrAttemptKept
		}
		entries, err := tx.LRange(ctx, qk, 0, -1).Result()
		if err != nil {
			return err
		}
		sum, err := sumQueued(id, entries)
		if err != nil {
			return err
		}
		var b []byte
		if sum.Sign() > 0 {
			a = &Attempt{ID: attemptID, Amount: sum, InProgress: true}
			if b, err = json.Marshal(a); err != nil {
				return err
			}
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Del(ctx, qk)
			if a != nil {
				p.Set(ctx, ak, b, 0)
			}
			return nil
		})
		return err
	}, qk, ak, r.leaseKey)
	if err != nil {
		return nil, err
	}
	return a, nil
}

// QueuedAmount implements QueueReader.
func (r *Redis) QueuedAmount(ctx context.Context, id string) (decimal.Decimal, error) {
	if err := r.Err(); err != nil {
		return decimal.Decimal{}, err
	}
	entries, err := r.c.LRange(ctx, r.key("queue:", id), 0, -1).Result()
	if err != nil {
		return decimal.Decimal{}, err
	}
	return sumQueued(id, entries)
}

// sumQueued adds the queued amounts of id.
func sumQueued(id string, entries []string) (decimal.Decimal, error) {
	var sum decimal.Decimal
	for _, s := range entries {
		d, err := decimal.NewFromString(s)
		if err != nil { // written by this package only; a bad entry would be a bug or tampering
			return decimal.Decimal{}, fmt.Errorf("settlement engine: queued amount %q of %s: %w", s, id, err)
		}
		sum = sum.Add(d)
	}
	return sum, nil
}

// keptIs, in a script, reports whether the attempt kept at key has the id given. The id is read
// from the attempt's JSON, which this package writes (cjson is in every Redis since 2.6).
const keptIs = `local function keptIs(key, id)
  local kept = redis.call('GET', key)
  if not kept then return false end
  local ok, at = pcall(cjson.decode, kept)
  return ok and type(at) == 'table' and at['id'] == id
end
`

// endScript is EndAttempt in one atomic step.
var endScript = redis.NewScript(leaseCheck + keptIs + `
if not keptIs(KEYS[2], ARGV[3]) then return 0 end
redis.call('DEL', KEYS[2])
if ARGV[2] ~= '' and redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then
  redis.call('RPUSH', KEYS[3], ARGV[2])
end
return 1
`)

// EndAttempt implements Store.
func (r *Redis) EndAttempt(ctx context.Context, id, attemptID string, requeue decimal.Decimal) error {
	amount := ""
	if !requeue.IsZero() {
		amount = requeue.String()
	}
	return r.runFenced(ctx, endScript, []string{r.key("accounts"), r.key("attempt:", id), r.key("queue:", id)}, id, amount, attemptID).Err()
}

// maxWatchRetries bounds the optimistic retries of QueueCredit and StartAttempt when a key
// they watch changes meanwhile: the account's leftover or queue, or the lease, which every
// renewal touches.
const maxWatchRetries = 32

// QueueCredit implements Store.
func (r *Redis) QueueCredit(ctx context.Context, account string, amount decimal.Decimal, scale uint8, key, settlementID string) (Credit, bool, error) {
	lk := r.key("left:", account)
	for range maxWatchRetries {
		c, ok, err := r.queueCreditOnce(ctx, lk, account, amount, scale, key, settlementID)
		if !errors.Is(err, redis.TxFailedErr) {
			return c, ok, err
		}
	}
	return Credit{}, false, fmt.Errorf("settlement engine: credit of %s: too much contention", account)
}

// seenKey is the key recording that settlementID was credited to account.
func (r *Redis) seenKey(account, settlementID string) string {
	return r.key("seen:", strconv.Itoa(len(account)), ":", account, ":", settlementID)
}

func (r *Redis) queueCreditOnce(ctx context.Context, lk, account string, amount decimal.Decimal, scale uint8, key, settlementID string) (c Credit, ok bool, err error) {
	if err := r.Err(); err != nil {
		return Credit{}, false, err
	}
	watch, sk := []string{lk, r.leaseKey}, ""
	if settlementID != "" {
		sk = r.seenKey(account, settlementID)
		watch = append(watch, sk)
	}
	err = r.c.Watch(ctx, func(tx *redis.Tx) error {
		if err := r.checkLease(ctx, tx); err != nil {
			return err
		}
		if sk != "" {
			if n, err := tx.Expire(ctx, sk, IdempotencyTTL).Result(); err != nil || n {
				if err == nil {
					err = ErrCreditedBefore
				}
				return err
			}
		}
		left := decimal.Zero
		s, err := tx.Get(ctx, lk).Result()
		switch {
		case err == nil:
			if left, err = decimal.NewFromString(s); err != nil {
				return fmt.Errorf("settlement engine: leftover %q of %s: %w", s, account, err)
			}
		case !errors.Is(err, redis.Nil):
			return err
		}
		var rest decimal.Decimal
		if c, rest, err = splitCredit(left.Add(amount), scale, key, account, settlementID); err != nil {
			return err
		}
		ok = c.Quantity.Amount != "0"
		b, err := json.Marshal(c)
		if err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, lk, rest.String(), 0)
			if ok {
				p.HSet(ctx, r.key("credits"), key, b)
			}
			if sk != "" {
				p.Set(ctx, sk, "1", IdempotencyTTL)
			}
			return nil
		})
		return err
	}, watch...)
	if !ok {
		c = Credit{}
	}
	return c, ok, err
}

// Credits implements Store.
func (r *Redis) Credits(ctx context.Context) ([]Credit, error) {
	if err := r.Err(); err != nil {
		return nil, err
	}
	m, err := r.c.HGetAll(ctx, r.key("credits")).Result()
	if err != nil {
		return nil, err
	}
	cs := make([]Credit, 0, len(m))
	for k, v := range m {
		var c Credit
		if err := json.Unmarshal([]byte(v), &c); err != nil {
			return nil, fmt.Errorf("settlement engine: queued credit %q: %w", k, err)
		}
		cs = append(cs, c)
	}
	return cs, nil
}

// ackScript is AckCredit, fenced by the lease.
var ackScript = redis.NewScript(leaseCheck + `return redis.call('HDEL', KEYS[1], ARGV[1])`)

// AckCredit implements Store.
func (r *Redis) AckCredit(ctx context.Context, key string) error {
	return r.runFenced(ctx, ackScript, []string{r.key("credits")}, key).Err()
}

// updateScript is UpdateAttempt in one atomic step.
var updateScript = redis.NewScript(leaseCheck + keptIs + `
if not keptIs(KEYS[1], ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
`)

// UpdateAttempt implements Store.
func (r *Redis) UpdateAttempt(ctx context.Context, id string, a Attempt) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return r.runFenced(ctx, updateScript, []string{r.key("attempt:", id)}, a.ID, b).Err()
}

// attemptScript is Attempt's read, fenced by the lease.
var attemptScript = redis.NewScript(leaseCheck + `return redis.call('GET', KEYS[1])`)

// Attempt implements Store.
func (r *Redis) Attempt(ctx context.Context, id string) (*Attempt, error) {
	// Fenced like a write: an attempt read is what leads to a Settle (an attempt tried again),
	// so a process whose lease is gone — a successor may be settling it — learns it here.
	b, err := r.runFenced(ctx, attemptScript, []string{r.key("attempt:", id)}).Text()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var a Attempt
	if err := json.Unmarshal([]byte(b), &a); err != nil {
		return nil, fmt.Errorf("settlement engine: attempt of %s: %w", id, err)
	}
	return &a, nil
}
