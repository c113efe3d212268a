package engine

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The lease: one process per Redis prefix.
//
// A process takes the attempts it finds in progress at start as left by a stopped one, which
// is only right if no other process uses the prefix meanwhile: a second replica, or the pod
// Kubernetes starts while the one it replaces still drains (its Close waits for Settle). So
// the Redis store holds <prefix>lease, a token of its own with a TTL, from OpenRedis to
// Close: OpenRedis waits while another process holds it, the store renews it every sixth of
// the TTL, and Close deletes it (if still its own) once the caller has closed the Server, so
// that the next process starts only after this one's Settles returned.
//
// A process that finds its lease gone or another's (it stalled, or could not reach Redis,
// for longer than the TTL, and another process may have taken over) has lost the prefix:
// every operation of the store fails with ErrLeaseLost from then on — the writes are also
// refused by Redis itself, atomically, for a token not the lease's — and Failed is closed;
// the process must stop, as the connector runtime does when its instance is taken over.

// DefaultRedisLease is the TTL of the Redis store's lease: how long a process that stops
// without Close (a kill -9, a lost node) keeps its successor waiting, and how long a process
// may stall or lose Redis before it loses the prefix.
const DefaultRedisLease = 15 * time.Second

// ErrLeaseLost is what every operation of a Redis store returns once it has lost its lease
// (see Redis.Failed).
var ErrLeaseLost = errors.New("settlement engine: redis: this process lost the lease on its key prefix (it stalled, or could not reach Redis, for longer than the lease, and another process may have taken the prefix over); it may no longer use the store: restart it, and run one engine process per prefix")

// leaseLostReply is the error reply of a script run with a token that is not the lease's.
const leaseLostReply = "LEASELOST"

// leaseCheck opens every script that writes: its last key is the lease, its last argument
// this process's token.
const leaseCheck = `if redis.call('GET', KEYS[#KEYS]) ~= ARGV[#ARGV] then return redis.error_reply('` + leaseLostReply + ` lease not held') end
`

// renewScript extends the lease if it is still this process's (1), else 0. KEYS lease; ARGV
// token, TTL in ms.
var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`)

// releaseScript deletes the lease if it is still this process's: never another's.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])`)

// RedisOptions are OpenRedisWith's options. Zero fields take the defaults.
type RedisOptions struct {
	// Lease is the lease's TTL (DefaultRedisLease); it is renewed every sixth of it.
	Lease time.Duration
	// Log receives the store's log: the wait for another process, the loss of the lease
	// (slog.Default()).
	Log *slog.Logger
}

// leaseToken names this process to the others waiting for the prefix (the host name is the
// pod's) and is unique to it.
func leaseToken() string {
	host, _ := os.Hostname()
	return host + "/" + strconv.Itoa(os.Getpid()) + "/" + rand.Text()
}

// acquire waits until this process holds the lease, or ctx ends.
func (r *Redis) acquire(ctx context.Context) error {
	poll := time.NewTicker(min(time.Second, r.lease/3))
	defer poll.Stop()
	waitingFor := ""
	for {
		sent := time.Now()
		ok, err := r.c.SetNX(ctx, r.leaseKey, r.token, r.lease).Result()
		if err != nil {
			return fmt.Errorf("settlement engine: redis: taking the lease on prefix %q: %w", r.prefix, err)
		}
		if ok {
			r.heldFrom(sent)
			if waitingFor != "" {
				r.log.Info("settlement engine: the other process stopped; this one holds the Redis prefix now", "prefix", r.prefix, "lease", r.token)
			}
			return nil
		}
		holder, err := r.c.Get(ctx, r.leaseKey).Result()
		if err != nil && !errors.Is(err, redis.Nil) { // Nil: released just now
			return fmt.Errorf("settlement engine: redis: reading the lease on prefix %q: %w", r.prefix, err)
		}
		if holder != "" && holder != waitingFor {
			r.log.Info("settlement engine: another process holds this Redis prefix; waiting until it stops (one engine process per prefix: this one does nothing meanwhile)",
				"prefix", r.prefix, "holder", holder, "lease", r.lease)
			waitingFor = holder
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("settlement engine: redis: stopped while waiting for the process holding prefix %q (%s) to stop: %w", r.prefix, waitingFor, ctx.Err())
		case <-poll.C:
		}
	}
}

// leaseMargin is how long before its TTL runs out, counted from the send of the command that
// set it, a process stops counting on its lease: Redis counts from a little later, so a
// successor can take the prefix only once this process has stopped using it.
func (r *Redis) leaseMargin() time.Duration { return r.lease / 6 }

// heldFrom records that a command sent at sent set the lease's TTL (see validUntil).
func (r *Redis) heldFrom(sent time.Time) {
	r.validUntil.Store(sent.Add(r.lease - r.leaseMargin()).UnixNano())
}

// keepLease renews the lease every sixth of its TTL until Close, or until it is lost: found
// gone or another's, or not renewed in time (Err then finds it past validUntil). A renewal
// waits for Redis at most until the next one is due, so a failed one is tried again a few
// times before the lease's validity runs out.
func (r *Redis) keepLease() {
	defer close(r.renewed)
	tick := time.NewTicker(r.lease / 6)
	defer tick.Stop()
	for {
		select {
		case <-r.closing:
			return
		case <-tick.C:
		}
		if r.Err() != nil { // lost, or this process stalled past its lease's validity
			return
		}
		sent := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), r.lease/6)
		ok, err := renewScript.Run(ctx, r.c, []string{r.leaseKey}, r.token, r.lease.Milliseconds()).Int()
		cancel()
		switch {
		case err == nil && ok == 1:
			r.heldFrom(sent)
		case err == nil:
			r.loseLease("the lease is gone or another process's", nil)
			return
		default:
			r.log.Warn("settlement engine: redis: cannot renew the lease on the prefix; trying again", "prefix", r.prefix, "err", err)
		}
	}
}

// loseLease marks the lease lost, once, and says so.
func (r *Redis) loseLease(why string, err error) {
	r.lostOnce.Do(func() {
		r.log.Error("settlement engine: redis: LEASE LOST: this process no longer holds its key prefix and stops using the store; it must be restarted",
			"prefix", r.prefix, "why", why, "err", err, "lease", r.token)
		close(r.lost)
	})
}

// Failed is closed when the store lost its lease: every operation fails with ErrLeaseLost
// from then on, and the process must stop (Server.Close, Close, exit with an error), to be
// restarted once the process now holding the prefix stops.
func (r *Redis) Failed() <-chan struct{} { return r.lost }

// Err says why the store failed, once Failed is closed; nil before. Past its validity (no
// renewal succeeded in time: Redis unreachable, or this process stalled) the lease is lost
// here, before Redis may expire it and a successor take the prefix: every operation asks.
func (r *Redis) Err() error {
	select {
	case <-r.lost:
		return ErrLeaseLost
	default:
	}
	if time.Now().UnixNano() > r.validUntil.Load() {
		r.loseLease("not renewed for longer than its TTL allows", nil)
		return ErrLeaseLost
	}
	return nil
}

// release stops the renewal and deletes the lease if it is still this process's.
func (r *Redis) release() error {
	close(r.closing)
	<-r.renewed
	ctx, cancel := context.WithTimeout(context.Background(), r.lease)
	defer cancel()
	if err := releaseScript.Run(ctx, r.c, []string{r.leaseKey}, r.token).Err(); err != nil {
		return fmt.Errorf("settlement engine: redis: releasing the lease on prefix %q (the next process waits for its TTL): %w", r.prefix, err)
	}
	return nil
}

// fence appends the lease and the token to a writing script's keys and arguments.
func (r *Redis) fence(keys []string, args ...any) ([]string, []any) {
	return append(keys, r.leaseKey), append(args, r.token)
}

// runFenced runs a script that opens with leaseCheck.
func (r *Redis) runFenced(ctx context.Context, s *redis.Script, keys []string, args ...any) *redis.Cmd {
	if err := r.Err(); err != nil {
		cmd := redis.NewCmd(ctx)
		cmd.SetErr(err)
		return cmd
	}
	keys, args = r.fence(keys, args...)
	cmd := s.Run(ctx, r.c, keys, args...)
	if err := cmd.Err(); err != nil && strings.HasPrefix(err.Error(), leaseLostReply) {
		r.loseLease("a write was refused for a token not the lease's", nil)
		cmd.SetErr(ErrLeaseLost)
	}
	return cmd
}

// checkLease, in a WATCH transaction that watches the lease, fails unless it is still this
// process's.
func (r *Redis) checkLease(ctx context.Context, tx *redis.Tx) error {
	holder, err := tx.Get(ctx, r.leaseKey).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	if holder != r.token {
		r.loseLease("the lease is gone or another process's", nil)
		return ErrLeaseLost
	}
	return nil
}
