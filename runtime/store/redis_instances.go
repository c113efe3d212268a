package store

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Instances: what becomes of the packets in flight of a runtime that never comes back.
//
// A runtime that restarts under its instance name reverts what its previous process left in
// flight (OpenRedis). But a pod of a Deployment that dies with its node, or is deleted without
// a graceful stop, is replaced by a pod of another name: its raises of packets never answered
// would stay in the balances, and its reservations would hold the accounts' liquidity, for
// ever. So the runtimes sharing a Redis keep a registry (<prefix>instances: instance → the
// Redis time of its last heartbeat, every lease/6), and each one, every lease/3, reclaims the
// instances not heard of for longer than the lease: it takes the instance's key over with a
// token of its own (which fences the dead process, should it still be alive), reverts the
// instance's open changes and reservations on every account as its own restart would, and
// removes the instance's keys.
//
// A runtime reclaims others only after a full lease of its own heartbeats succeeding: when
// Redis comes back from an outage every runtime's heartbeat is old, and each must have had
// the time to renew its own before any judges the others dead.
//
// A runtime that finds its instance taken over (its heartbeat or a write refused for the
// token) has lost its packets in flight to the reclaim or to a newer process: it refuses
// every write from then on and says so (Failed), and the connector stops, to be restarted.

// DefaultInstanceLease is how long a runtime may go without a heartbeat before the others
// reclaim its instance.
const DefaultInstanceLease = 30 * time.Second

// identity is an instance as the scripts see it: its name, its key (a hash: t, the token of
// its current process, and its lane records), and the token its writes carry.
type identity struct {
	name, key, token string
}

func newIdentity(prefix, name, token string) identity {
	return identity{name: name, key: prefix + "inst:" + name, token: token}
}

func (r *Redis) registryKey() string { return r.prefix + "instances" }

// redisNow is the Redis server's clock in milliseconds: every runtime compares heartbeats on
// the same clock.
const redisNow = `local function now() local t = redis.call('TIME') return t[1] * 1000 + math.floor(t[2] / 1000) end
`

// claimScript makes a process its instance's current one, if the instance's token is still the
// one read before (ARGV[3], empty for none): its token in the instance's key (an earlier process's
// writes are refused from then on), no lane records (it numbers its writes from zero), a
// heartbeat. It is 1 also when the token is already this one, changing nothing: a copy of the
// claim that arrives late (go-redis sent it again after a lost reply) must not erase the lane
// records the process has written since. 0: another token took the place meanwhile. KEYS
// instance key, registry; ARGV token, name, previous token.
var claimScript = redis.NewScript(redisNow + `
local cur = redis.call('HGET', KEYS[1], 't')
if cur == ARGV[1] then return 1 end
if (cur or '') ~= ARGV[3] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 't', ARGV[1])
redis.call('HSET', KEYS[2], ARGV[2], now())
return 1`)

// switchScript replaces the start-up token with the running one (1; 1 also if it is done
// already), so that a late copy of a start-up write (the recovery's, sent without a lane) is
// refused once the process writes on its own; 0 if another process took the instance. KEYS
// instance key; ARGV start-up token, running token.
var switchScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], 't')
if cur == ARGV[2] then return 1 end
if cur ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 't', ARGV[2])
return 1`)

// heartbeatScript renews a process's heartbeat if the instance is still its own (1), or
// reports that it is not (0). KEYS instance key, registry; ARGV token, name, and the token the
// process switches to at the end of its start (empty when none): a heartbeat sent with the
// start-up token while the switch happens must not be taken for a takeover.
var heartbeatScript = redis.NewScript(redisNow + `
local t = redis.call('HGET', KEYS[1], 't')
if t ~= ARGV[1] and t ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], now())
return 1`)

// takeOverScript gives the instance's key to a reclaimer's token if the instance's last
// heartbeat is older than the lease (1), else 0, and renews the heartbeat on the reclaimer's
// behalf, so that no other runtime takes it over while this one reclaims it (the reclaimer
// renews it as it goes, see keepAlive). KEYS instance key, registry; ARGV name, token, lease in
// ms.
var takeOverScript = redis.NewScript(redisNow + `
local last = redis.call('HGET', KEYS[2], ARGV[1])
if not last or now() - tonumber(last) <= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], 't', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], now())
return 1`)

// forgetScript removes a reclaimed instance if the reclaimer still holds it. KEYS instance
// key, registry; ARGV token, name.
var forgetScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 't') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[2], ARGV[2])
return 1`)

// self is this process's identity, with the token it writes with now.
func (r *Redis) self() identity {
	id := r.me
	id.token = *r.tok.Load()
	return id
}

// start makes this process its instance's current one and reverts what a previous process of
// the instance left in flight. It works under a start-up token and takes its running token
// only then: a late copy of a start-up script is then refused instead of undoing the
// process's first packets.
func (r *Redis) start(ctx context.Context) error {
	boot := newIdentity(r.prefix, r.me.name, rand.Text())
	r.tok.Store(&boot.token)
	r.run = rand.Text()
	if err := r.claimInstance(ctx, boot.token); err != nil {
		return err
	}
	r.watch() // heartbeats from now on: a recovery longer than the lease must not look dead
	if err := r.recover(ctx, boot); err != nil {
		return err
	}
	ok, err := switchScript.Run(ctx, r.c, []string{r.me.key}, boot.token, r.run).Int()
	if err == nil && ok == 0 {
		err = ErrFenced
	}
	if err != nil {
		return fmt.Errorf("store: redis: starting the instance %q: %w", r.me.name, err)
	}
	r.tok.Store(&r.run)
	return nil
}

// claimInstance makes this process, with token, its instance's current one (claimScript).
func (r *Redis) claimInstance(ctx context.Context, token string) error {
	for range 3 { // another process may claim between the read and the claim
		prev, err := r.c.HGet(ctx, r.me.key, "t").Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("store: redis: claiming the instance %q: %w", r.me.name, err)
		}
		ok, err := claimScript.Run(ctx, r.c, []string{r.me.key, r.registryKey()}, token, r.me.name, prev).Int()
		if err != nil {
			return fmt.Errorf("store: redis: claiming the instance %q: %w", r.me.name, err)
		}
		if ok == 1 {
			return nil
		}
	}
	return fmt.Errorf("store: redis: claiming the instance %q: other processes keep claiming it; give every runtime its own instance name", r.me.name)
}

// Failed is closed when another process took this store's instance over: every write is
// refused from then on (ErrFenced), and the runtime must stop.
func (r *Redis) Failed() <-chan struct{} { return r.failed }

// Err says why the store failed, once Failed is closed.
func (r *Redis) Err() error { return ErrFenced }

func (r *Redis) fail() {
	r.failOnce.Do(func() {
		r.log.Error("store: redis: another process took this instance over; its packets in flight were reverted, and this runtime must restart", "instance", r.me.name)
		close(r.failed)
	})
}

// watch starts the heartbeat and the reclaim of dead instances, until Close or failure.
func (r *Redis) watch() {
	r.watching.Add(1)
	go func() {
		defer r.watching.Done()
		beat := time.NewTicker(r.lease / 6)
		defer beat.Stop()
		healthySince := time.Now()
		nextReclaim := time.Now().Add(r.lease / 3)
		for {
			select {
			case <-r.bg.Done():
				return
			case <-r.failed:
				return
			case now := <-beat.C:
				if !r.heartbeat() {
					healthySince = time.Time{}
					continue
				}
				if r.draining.CompareAndSwap(false, true) {
					r.watching.Go(func() { // beside the heartbeats, which must not wait for Redis writes
						defer r.draining.Store(false)
						r.drainDeferredFor(resolveTimeout)
					})
				}
				if healthySince.IsZero() {
					healthySince = now
				}
				if now.Sub(healthySince) >= r.lease && now.After(nextReclaim) && r.reclaiming.CompareAndSwap(false, true) {
					nextReclaim = now.Add(r.lease / 3)
					r.watching.Go(func() { // beside the heartbeats: a reclaim may take longer than a lease
						defer r.reclaiming.Store(false)
						r.reclaimDead()
					})
				}
			}
		}
	}()
}

// heartbeat renews this process's heartbeat and reports whether it could.
func (r *Redis) heartbeat() bool {
	ctx, cancel := context.WithTimeout(r.bg, r.lease/6)
	defer cancel()
	ok, err := heartbeatScript.Run(ctx, r.c, []string{r.me.key, r.registryKey()}, *r.tok.Load(), r.me.name, r.run).Int()
	if err != nil {
		return false
	}
	if ok == 0 {
		r.fail()
		return false
	}
	return true
}

// reclaimDead reclaims every instance whose heartbeat is older than the lease. It runs until
// it is done or the store closes: a reclaim cut short would start over from the first account.
func (r *Redis) reclaimDead() {
	ctx := r.bg
	beats, err := r.c.HGetAll(ctx, r.registryKey()).Result()
	if err != nil {
		return
	}
	now, err := r.c.Time(ctx).Result()
	if err != nil {
		return
	}
	for name, v := range beats {
		last, err := strconv.ParseInt(v, 10, 64)
		if name == r.me.name || err != nil || now.UnixMilli()-last <= r.lease.Milliseconds() {
			continue
		}
		if err := r.reclaim(ctx, name); err != nil {
			r.log.Warn("store: redis: reclaiming a dead instance failed; retried later", "instance", name, "err", err)
		}
	}
}

// reclaim takes the dead instance over and reverts what it left in flight.
func (r *Redis) reclaim(ctx context.Context, name string) error {
	id := newIdentity(r.prefix, name, "reclaimed-by-"+r.me.name+"-"+rand.Text())
	took, err := takeOverScript.Run(ctx, r.c, []string{id.key, r.registryKey()}, name, id.token, r.lease.Milliseconds()).Int()
	if err != nil || took == 0 {
		return err
	}
	r.log.Warn("store: redis: reclaiming a runtime not heard of for longer than its lease: reverting its packets in flight and reservations",
		"instance", name, "lease", r.lease)
	if err := r.recover(ctx, id); err != nil {
		return err
	}
	return forgetScript.Run(ctx, r.c, []string{id.key, r.registryKey()}, id.token, name).Err()
}

// leave ends this process's instance when it stops: what it still has in flight is reverted,
// as its restart would, and the instance is removed, so that no other runtime has to reclaim
// it. Errors are left to the reclaim.
func (r *Redis) leave(ctx context.Context) {
	select {
	case <-r.failed:
		return // the instance is not ours any more
	default:
	}
	me := r.self()
	if r.recover(ctx, me) == nil {
		_ = forgetScript.Run(ctx, r.c, []string{me.key, r.registryKey()}, me.token, me.name).Err()
	}
}
