package store

import (
	"cmp"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/redislog"
	"github.com/redis/go-redis/v9"
)

//go:embed redis.lua
var redisLua string

var balanceScript = redis.NewScript(redisLua)

// DefaultRedisPrefix prefixes every key the Redis store writes.
const DefaultRedisPrefix = "ilpfleet:"

// RedisOptions configure a Redis store. In the connector they come from CONNECTOR_STORE_CONFIG
// (JSON, the field names below), the URL possibly from CONNECTOR_STORE_PATH.
type RedisOptions struct {
	// URL is redis://[user:password@]host:port[/db] (rediss:// for TLS, unix:///path for a
	// socket).
	URL string `json:"url"`
	// Host, Port, Username, Password, DB and Path (a Unix socket) are the ioredis fields that
	// the JS ilp-store-redis takes in storeConfig, accepted instead of URL so that a JS config
	// works unchanged.
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Username string `json:"username"`
	Password string `json:"password"`
	DB       int    `json:"db"`
	Path     string `json:"path"`
	// Prefix is put before every key (default DefaultRedisPrefix), so that several fleets can
	// share one Redis. Runtimes that share balances use the same prefix.
	Prefix string `json:"prefix"`
	// Instance names this runtime among those sharing the Redis (default: the host name, which
	// is the pod name in Kubernetes). It must be stable across restarts and unique among the
	// runtimes running at once: on open, the store reverts what a previous process of the same
	// instance left in flight.
	Instance string `json:"instance"`
	// PoolSize is the number of connections (default 10 per CPU, go-redis's default).
	PoolSize int `json:"poolSize"`
	// DialTimeout bounds connecting and the first PING (default 5 s).
	DialTimeout time.Duration `json:"-"`
	// lease is DefaultInstanceLease, shorter in tests.
	lease time.Duration
	// hook, in tests, sees every command the client sends.
	hook redis.Hook
	// Log receives what the store does in the background: writes whose reply was lost, once
	// resolved (default slog.Default()).
	Log *slog.Logger `json:"-"`
}

// ParseRedisOptions reads CONNECTOR_STORE_CONFIG for the Redis store. path (CONNECTOR_STORE_PATH,
// which the JS connector hands its store as storeConfig.path) is the URL, or a Unix socket when
// it starts with "/", when the config names no server.
func ParseRedisOptions(path string, config json.RawMessage) (RedisOptions, error) {
	var o RedisOptions
	if len(config) > 0 {
		dec := json.NewDecoder(strings.NewReader(string(config)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&o); err != nil {
			return o, fmt.Errorf("store: redis CONNECTOR_STORE_CONFIG (storeConfig): %w (fields: url or host, port, username, password, db, path; prefix, instance, poolSize)", err)
		}
	}
	byFields := o.Host != "" || o.Port != 0 || o.Username != "" || o.Password != "" || o.DB != 0 || o.Path != ""
	switch {
	case o.URL != "" && byFields:
		return o, errors.New("store: redis CONNECTOR_STORE_CONFIG (storeConfig): set either url or the ioredis fields (host, port, username, password, db, path), not both")
	case byFields:
		o.URL = o.fieldsURL()
	case o.URL == "" && strings.HasPrefix(path, "/"):
		o.URL = (&url.URL{Scheme: "unix", Path: path}).String()
	case o.URL == "":
		o.URL = path
	}
	if o.URL == "" {
		return o, errors.New(`store: the redis store needs a URL: CONNECTOR_STORE_CONFIG='{"url":"redis://host:6379/0"}' (or CONNECTOR_STORE_PATH)`)
	}
	return o, nil
}

// fieldsURL is the URL of the ioredis fields, with ioredis's defaults (localhost:6379, db 0).
func (o RedisOptions) fieldsURL() string {
	u := &url.URL{Scheme: "redis", Host: net.JoinHostPort(cmp.Or(o.Host, "localhost"), strconv.Itoa(cmp.Or(o.Port, 6379))),
		Path: "/" + strconv.Itoa(o.DB)}
	if o.Path != "" {
		u = &url.URL{Scheme: "unix", Path: o.Path, RawQuery: url.Values{"db": {strconv.Itoa(o.DB)}}.Encode()}
	}
	if o.Password != "" {
		u.User = url.UserPassword(o.Username, o.Password)
	} else if o.Username != "" {
		u.User = url.User(o.Username)
	}
	return u.String()
}

// Redis is a Store in Redis, for connectors whose replicas share balances. Every balance
// operation is one Lua script (redis.lua) run atomically on the server over the account's hash,
// applying the same transitions as transitions.go with exact int64 arithmetic, so runtimes
// serving the same account never overspend its limits.
//
// Durability is Redis's: configure appendonly with appendfsync always (or everysec and accept
// its window) for balances to survive a Redis crash. A runtime crash is handled here: each
// runtime (Instance) keeps, in the account's hash, the part of the balance changed by its
// packets in flight (o:<instance>, see PacketScoper) and of the reservations it holds
// (p:<instance>). OpenRedis reverts both for its instance before it returns, so a restarted
// runtime neither charges the senders of packets whose Fulfill they never saw nor leaks its
// reservations; the reservations of other instances are untouched.
type Redis struct {
	c      *redis.Client
	prefix string
	me     identity               // this instance; its token is tok's (redis_instances.go)
	tok    atomic.Pointer[string] // the token this process writes with
	run    string                 // its running token, taken at the end of its start
	log    *slog.Logger

	pipe      *autoPipeline   // sends the balance scripts (redis_pipeline.go)
	lanes     chan *lane      // the free ones
	laneWait  time.Duration   // laneWait, shorter in tests
	closeWait time.Duration   // closeWait, shorter in tests
	bg        context.Context // the background work's, cancelled by Close
	stop      context.CancelFunc

	lease      time.Duration // see redis_instances.go
	failed     chan struct{} // closed when another process took this instance over
	failOnce   sync.Once
	watching   sync.WaitGroup // the heartbeat and the reclaims
	reclaiming atomic.Bool
	draining   atomic.Bool

	mu sync.Mutex
	// deferred holds the writes that must be applied but found no free lane (Redis
	// unreachable for a while): never sent, they are sent beside the heartbeats and on Close.
	deferred  []call
	closing   bool // Close stops: no write and no resolver may start
	resolvers int  // running (a WaitGroup cannot be waited for while new ones start)
	inflight  int  // writes being made
	mayLose   int  // of inflight and resolvers, the writes that may be lost (call.mayBeLost)
	// cutOff counts the must-apply writes lost to Close: refused, never sent, or stopped
	// while being resolved.
	cutOff atomic.Int64
}

var (
	_ Store        = (*Redis)(nil)
	_ PacketScoper = (*Redis)(nil)
	_ Failer       = (*Redis)(nil)
)

// OpenRedis connects, checks that the server answers, and recovers this instance's state left
// by a previous process (see Redis). A URL with master_name reaches the master through Redis
// Sentinel (see newRedisClient).
func OpenRedis(ctx context.Context, o RedisOptions) (*Redis, error) {
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	c, where, err := newRedisClient(o)
	if err != nil {
		return nil, err
	}
	if o.hook != nil {
		c.AddHook(o.hook)
	}
	if o.Prefix == "" {
		o.Prefix = DefaultRedisPrefix
	}
	if o.Instance == "" {
		if o.Instance, err = os.Hostname(); err != nil || o.Instance == "" {
			_ = c.Close()
			return nil, errors.New(`store: redis: cannot name this instance from the host name; set "instance" in CONNECTOR_STORE_CONFIG`)
		}
	}
	pctx, cancel := context.WithTimeout(ctx, o.DialTimeout)
	defer cancel()
	if err := c.Ping(pctx).Err(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("store: cannot reach Redis at %s: %w", where, err)
	}
	// Loaded now, so that the first packets' pipelines do not each find it missing.
	if err := balanceScript.Load(pctx, c).Err(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("store: redis at %s: loading the balance script: %w", where, err)
	}
	r := &Redis{c: c, prefix: o.Prefix, me: newIdentity(o.Prefix, o.Instance, ""), log: cmp.Or(o.Log, slog.Default()),
		lanes: newLanes(max(4*c.Options().PoolSize, 64)), failed: make(chan struct{}), lease: cmp.Or(o.lease, DefaultInstanceLease), laneWait: laneWait, closeWait: closeWait}
	redislog.Use(r.log)
	r.bg, r.stop = context.WithCancel(context.Background())
	r.pipe = startAutoPipeline(r.bg, c, &r.watching)
	if err := r.start(ctx); err != nil {
		r.stop()
		r.watching.Wait()
		_ = c.Close()
		return nil, err
	}
	return r, nil
}

// newRedisClient is the client of o.URL and where it connects, for messages. With a
// master_name in the query the URL names Sentinels (go-redis's failover URL:
// redis://[sentinel-user:sentinel-password@]sentinel:26379/0?master_name=m&addr=sentinel2:26379,
// the master's password as password=…): the client asks them for the master and follows a
// failover, so a fleet survives the loss of its Redis master.
func newRedisClient(o RedisOptions) (*redis.Client, string, error) {
	if u, err := url.Parse(o.URL); err == nil && u.Query().Has("master_name") {
		fo, err := redis.ParseFailoverURL(o.URL)
		if err != nil {
			return nil, "", fmt.Errorf("store: redis url %q: %w", redactedURL(o.URL), causeOf(err))
		}
		fo.DialTimeout = o.DialTimeout
		fo.ContextTimeoutEnabled = true
		if o.PoolSize > 0 {
			fo.PoolSize = o.PoolSize
		}
		return redis.NewFailoverClient(fo), fmt.Sprintf("master %q of the Sentinels %s", fo.MasterName, strings.Join(fo.SentinelAddrs, ", ")), nil
	}
	ropts, err := redis.ParseURL(o.URL)
	if err != nil {
		return nil, "", fmt.Errorf("store: redis url %q: %w", redactedURL(o.URL), causeOf(err))
	}
	ropts.DialTimeout = o.DialTimeout
	// A packet's deadline bounds its wait for Redis (go-redis ignores it by default).
	ropts.ContextTimeoutEnabled = true
	if o.PoolSize > 0 {
		ropts.PoolSize = o.PoolSize
	}
	return redis.NewClient(ropts), ropts.Addr, nil
}

// causeOf drops the URL a *url.Error repeats, password included.
func causeOf(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// redactedURL is a Redis URL fit for an error message, which may end up in a Connector's
// status: without its password, nor its query (a Sentinel URL's password=…).
func redactedURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable)"
	}
	if u.RawQuery != "" {
		u.RawQuery = "…"
	}
	return u.Redacted()
}

// Instance is the name this store's runtime has among those sharing the Redis.
func (r *Redis) Instance() string { return r.me.name }

func (r *Redis) accountKey(account string) string { return r.prefix + "acct:" + account }

// recover reverts, on every account, what a previous process of the instance id left in
// flight; id's token must be in the instance's key (a newer process of it stops the recovery).
// It is bounded by the number of accounts in the Redis: SCAN in pages of 1000, each page's
// accounts in one pipelined round trip.
func (r *Redis) recover(ctx context.Context, id identity) error {
	var cursor uint64
	for {
		// Escaped: a prefix with glob characters ("fleet[1]:") must not match another fleet's.
		keys, next, err := r.c.Scan(ctx, cursor, globEscape(r.prefix)+"acct:*", 1000).Result()
		if err != nil {
			return fmt.Errorf("store: redis recovery: %w", err)
		}
		if err := r.keepAlive(ctx, id); err != nil {
			return fmt.Errorf("store: redis recovery for instance %q: %w", id.name, err)
		}
		if err := r.recoverPage(ctx, id, keys); err != nil {
			return fmt.Errorf("store: redis recovery for instance %q: %w", id.name, err)
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// keepAlive renews id's heartbeat while it is being recovered, which may take longer than a
// lease (a large keyspace): neither this process's start nor a reclaim may be taken for dead
// and reclaimed by another runtime. ErrFenced when id's token is no longer the instance's.
func (r *Redis) keepAlive(ctx context.Context, id identity) error {
	ok, err := heartbeatScript.Run(ctx, r.c, []string{id.key, r.registryKey()}, id.token, id.name, "").Int()
	if err == nil && ok == 0 {
		err = ErrFenced
	}
	return err
}

// recoverPage runs 'recover' for id on the accounts' keys in one pipelined round trip (two if
// the server had lost the script).
func (r *Redis) recoverPage(ctx context.Context, id identity, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	for attempt := 0; ; attempt++ {
		cmds, _ := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range keys {
				skeys, args := r.scriptArgs(call{op: "recover", keys: []string{k}, amount: "0", as: &id}, nil, "recover")
				balanceScript.EvalSha(ctx, p, skeys, args...)
			}
			return nil
		})
		var first error
		noScript := false
		for i, cmd := range cmds {
			res, err := r.reply(call{op: "recover", keys: keys[i : i+1]}, cmd.(*redis.Cmd))
			if err == nil && res.code == codeFenced {
				err = ErrFenced
			}
			noScript = noScript || redis.HasErrorPrefix(err, "NOSCRIPT")
			if first == nil {
				first = err
			}
		}
		if !noScript || attempt > 0 {
			return first
		}
		if err := balanceScript.Load(ctx, r.c).Err(); err != nil {
			return err
		}
	}
}

// result is what the script returns.
type result struct {
	code     int64
	b        AccountBalance
	proposed string
}

// parseResult reads the script's reply to op on the account's hash key.
func parseResult(op, key string, v []any) (result, error) {
	if len(v) != 4 {
		return result{}, fmt.Errorf("store: redis %s: unexpected reply %v", op, v)
	}
	res := result{}
	res.code, _ = v[0].(int64)
	bs, _ := v[1].(string)
	ps, _ := v[2].(string)
	res.proposed, _ = v[3].(string)
	var e1, e2 error
	res.b.Balance, e1 = strconv.ParseInt(bs, 10, 64)
	res.b.Pending, e2 = strconv.ParseInt(ps, 10, 64)
	if e1 != nil || e2 != nil {
		return result{}, fmt.Errorf("store: redis %s: %s holds a non-integer balance %q/%q", op, key, bs, ps)
	}
	return res, nil
}

func limitArg(v *int64) string {
	if v == nil {
		return ""
	}
	return strconv.FormatInt(*v, 10)
}

// op runs one balance operation and maps its code to the package's errors.
func (r *Redis) op(ctx context.Context, op, account string, amount int64, min, max *int64) (AccountBalance, error) {
	c := call{op: op, keys: []string{r.accountKey(account)}, amount: strconv.FormatInt(amount, 10), min: min, max: max, account: account}
	var res result
	var err error
	if op == "get" {
		res, err = r.send(ctx, c, nil, op)
	} else {
		c.sc = scopeFrom(ctx)
		c.scoped = c.sc != nil && (op == "add" || op == "commit")
		res, err = r.write(ctx, c, classOf(ctx, c))
	}
	if err != nil {
		return AccountBalance{}, err
	}
	switch res.code {
	case codeOK:
	case codeAboveMax, codeBelowMin:
		le := &LimitError{Account: account, Balance: res.b.Balance, Pending: res.b.Pending, Err: ErrAboveMaximum}
		le.Proposed, _ = strconv.ParseInt(res.proposed, 10, 64)
		if res.code == codeAboveMax {
			le.Limit = *max
		} else {
			le.Limit, le.Err = *min, ErrBelowMinimum
		}
		return res.b, le
	case codeOverflow:
		return res.b, ErrOverflow
	case codeInvalid:
		return res.b, ErrInvalidAmount
	default:
		return res.b, fmt.Errorf("store: redis %s: unknown result code %d", op, res.code)
	}
	if c.scoped {
		return res.b, r.inScope(context.WithoutCancel(ctx), c)
	}
	return res.b, nil
}

// classOf says what becomes of c when its outcome is unknown: a reservation, and an add unless
// its caller marked it MustApply (a refund), are refused when they fail, so they must not apply
// later; nor may a set, whose late replay would erase every write made since. Commits,
// releases and ends must apply.
func classOf(ctx context.Context, c call) class {
	switch {
	case c.op == "reserve", c.op == "set", c.op == "add" && !mustApplyFrom(ctx):
		return checked
	}
	return mustApply
}

// inScope records the applied scoped write c in its packet's scope, or ends it at once if the
// packet already ended (a late refund racing the end, or a write the resolver applied).
func (r *Redis) inScope(ctx context.Context, c call) error {
	d, _ := strconv.ParseInt(c.amount, 10, 64)
	if c.op == "commit" {
		d = -d
	}
	if c.sc.add(c.account, d) {
		return nil
	}
	return r.endDelta(ctx, c.account, d)
}

// endDelta takes a packet's change of an account out of this instance's open part.
func (r *Redis) endDelta(ctx context.Context, account string, d int64) error {
	return r.endDeltas(ctx, []scopeDelta{{account, d}})
}

// BeginPacket implements PacketScoper.
func (r *Redis) BeginPacket(ctx context.Context) context.Context { return BeginPacket(ctx) }

// EndPacket implements PacketScoper: the packet's changes, already on the server, stop being
// open, their scripts queued together for the senders' pipelines (redis_pipeline.go; none for
// a packet whose net change is zero).
func (r *Redis) EndPacket(ctx context.Context) error {
	sc := scopeFrom(ctx)
	if sc == nil {
		return nil
	}
	var todo []scopeDelta
	for _, d := range sc.end() {
		if d.delta != 0 {
			todo = append(todo, d)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	return r.endDeltas(context.WithoutCancel(ctx), todo)
}

// endDeltas ends packet changes in pipelined round trips. Those that fail are the resolver's,
// or deferred if they found no lane: either way they are applied, once, later. A packet's
// ends are sent whatever became of its context: the caller detaches it.
func (r *Redis) endDeltas(ctx context.Context, todo []scopeDelta) error {
	calls := make([]call, len(todo))
	for i, d := range todo {
		calls[i] = call{op: "end", keys: []string{r.accountKey(d.account)}, amount: strconv.FormatInt(d.delta, 10), account: d.account}
	}
	_, errs := r.writeAll(ctx, calls)
	return joinEnds(errs)
}

// joinEnds is the error of a packet's ends, nil when every one was applied. It is AppliedLater
// only when each failed end is: errors.As would find one deferred end in a join and miss an
// end lost beside it, a balance to reconcile.
func joinEnds(errs []error) error {
	err := errors.Join(errs...)
	if err == nil {
		return nil
	}
	for _, e := range errs {
		if e != nil && !AppliedLater(e) {
			err = lostError{err}
			break
		}
	}
	return fmt.Errorf("store: redis end of packet: %w", err)
}

// lostError marks an error that holds a write not applied later, whatever else it holds.
type lostError struct{ error }

func (e lostError) Unwrap() error { return e.error }

// AppliedLater is false: AppliedLater stops at the first error in the chain that says.
func (lostError) AppliedLater() bool { return false }

// AddWithin implements Balances.
func (r *Redis) AddWithin(ctx context.Context, account string, delta int64, min, max *int64) (int64, error) {
	b, err := r.op(ctx, "add", account, delta, min, max)
	return b.Balance, err
}

// Reserve implements Balances.
func (r *Redis) Reserve(ctx context.Context, account string, amount int64, min *int64) (int64, error) {
	b, err := r.op(ctx, "reserve", account, amount, min, nil)
	if err != nil {
		return 0, err
	}
	avail, _ := b.Available()
	return avail, nil
}

// Commit implements Balances.
func (r *Redis) Commit(ctx context.Context, account string, amount int64) (int64, error) {
	b, err := r.op(ctx, "commit", account, amount, nil, nil)
	return b.Balance, err
}

// Release implements Balances.
func (r *Redis) Release(ctx context.Context, account string, amount int64) error {
	_, err := r.op(ctx, "release", account, amount, nil, nil)
	return err
}

// Get implements Balances.
func (r *Redis) Get(ctx context.Context, account string) (AccountBalance, error) {
	return r.op(ctx, "get", account, 0, nil, nil)
}

// Set implements Balances.
func (r *Redis) Set(ctx context.Context, account string, balance int64) error {
	_, err := r.op(ctx, "set", account, balance, nil, nil)
	return err
}

func (r *Redis) kvKey(key string) string { return r.prefix + "kv:" + key }

// GetKey implements KV.
func (r *Redis) GetKey(ctx context.Context, key string) ([]byte, error) {
	v, err := r.c.Get(ctx, r.kvKey(key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: redis get: %w", err)
	}
	return v, nil
}

// PutKey implements KV.
func (r *Redis) PutKey(ctx context.Context, key string, value []byte) error {
	if err := r.c.Set(ctx, r.kvKey(key), value, 0).Err(); err != nil {
		return fmt.Errorf("store: redis put: %w", err)
	}
	return nil
}

// CreateKey implements KV with SET NX in the script, under a lane: a create sent again after
// a lost reply reports the key created, not found.
func (r *Redis) CreateKey(ctx context.Context, key string, value []byte) (bool, error) {
	res, err := r.write(ctx, call{op: "create", keys: []string{r.kvKey(key)}, amount: "0", extra: []any{value}, key: key}, inPlace)
	return onceResult("create", res, err)
}

// onceResult maps the reply of a write made once per key (credit, create): code 0 made, 5
// there before.
func onceResult(op string, res result, err error) (bool, error) {
	if err != nil {
		return false, err
	}
	switch res.code {
	case codeOK:
		return true, nil
	case codeOnce:
		return false, nil
	case codeOverflow:
		return false, ErrOverflow
	case codeConflict:
		return false, ErrConflict
	}
	return false, fmt.Errorf("store: redis %s: unknown result code %d", op, res.code)
}

// DeleteKey implements KV.
func (r *Redis) DeleteKey(ctx context.Context, key string) error {
	if err := r.c.Del(ctx, r.kvKey(key)).Err(); err != nil {
		return fmt.Errorf("store: redis delete: %w", err)
	}
	return nil
}

// DeleteKeyIf implements KV: the script compares and deletes, under a lane, as CreateKey: a
// deletion sent again after a lost reply reports the key deleted, not changed or absent. One
// left to the resolver may still apply later, which is harmless: it still compares first; and
// so is one whose outcome Close leaves unknown (call.mayBeLost).
func (r *Redis) DeleteKeyIf(ctx context.Context, key string, was []byte) (bool, error) {
	g := deleteGuard(key, was)
	c := call{op: "delif", keys: []string{r.kvKey(key)}, amount: "0", extra: []any{guardArg(g)}, key: key, mayBeLost: true}
	res, err := r.write(ctx, c, inPlace)
	if err != nil {
		return false, err
	}
	if res.code != codeOK {
		return false, fmt.Errorf("store: redis delif: unknown result code %d", res.code)
	}
	return res.proposed == "1", nil
}

// guardArg is how the script reads a guarded entry's Was: 'a' absent, 'v'..value.
func guardArg(e Entry) any {
	if e.Was == nil {
		return "a"
	}
	return append([]byte{'v'}, e.Was...)
}

// SettleDue implements Settlements: one script compares the committed balance, raises it and
// records the key.
func (r *Redis) SettleDue(ctx context.Context, account string, threshold, settleTo int64, key string) (int64, error) {
	if threshold > settleTo {
		return 0, ErrInvalidAmount
	}
	res, err := r.write(ctx, call{op: "settle", keys: []string{r.accountKey(account), r.kvKey(key)},
		amount: strconv.FormatInt(settleTo, 10), min: &threshold, account: account}, inPlace)
	if err != nil {
		return 0, err
	}
	switch res.code {
	case codeOK:
	case codeOverflow:
		return 0, ErrOverflow
	default:
		return 0, fmt.Errorf("store: redis settle: unknown result code %d", res.code)
	}
	amount, err := strconv.ParseInt(res.proposed, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("store: redis settle: amount %q: %w", res.proposed, err)
	}
	return amount, nil
}

// CreditOnce implements Settlements: one script checks the key, adds to the balance and writes
// the key and the entries.
func (r *Redis) CreditOnce(ctx context.Context, account string, delta int64, key string, value []byte, entries ...Entry) (bool, error) {
	keys := make([]string, 0, 2+len(entries))
	keys = append(keys, r.accountKey(account), r.kvKey(key))
	extra := make([]any, 0, 1+len(entries))
	extra = append(extra, value)
	var guards []any
	for _, e := range entries {
		keys = append(keys, r.kvKey(e.Key))
		set, del := byte('s'), "d"
		if e.Guard {
			set, del = 'S', "D"
			guards = append(guards, guardArg(e))
		}
		if e.Value == nil {
			extra = append(extra, del)
		} else {
			extra = append(extra, append([]byte{set}, e.Value...))
		}
	}
	extra = append(extra, guards...)
	res, err := r.write(ctx, call{op: "credit", keys: keys, amount: strconv.FormatInt(delta, 10), extra: extra, account: account}, inPlace)
	return onceResult("credit", res, err)
}

// Keys implements Settlements with SCAN, bounded by the number of keys in the Redis (pages of
// 1000). SCAN may return a key twice; the result has each once.
func (r *Redis) Keys(ctx context.Context, prefix string) ([]string, error) {
	full := r.kvKey(prefix)
	pattern := globEscape(full) + "*"
	var keys []string
	var cursor uint64
	for {
		page, next, err := r.c.Scan(ctx, cursor, pattern, 1000).Result()
		if err != nil {
			return nil, fmt.Errorf("store: redis keys: %w", err)
		}
		for _, k := range page {
			if strings.HasPrefix(k, full) { // the pattern already says so; never trust a glob
				keys = append(keys, strings.TrimPrefix(k, r.kvKey("")))
			}
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys), nil
}

// globEscape makes s match itself in a Redis glob pattern.
func globEscape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if strings.IndexByte(`*?[]\`, c) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	return b.String()
}

// Close lets the writes in flight and the resolvers (see redis_lanes.go) finish, but for those
// that may be lost (call.mayBeLost), and sends the deferred writes; then it refuses new
// writes, stops the resolvers and the heartbeat, and leaves the registry of instances if no
// write was left unapplied (see leave); then it closes the connections. Everything before
// leaving shares 2 × closeWait (10 s), so that a stalled Redis does not hold a pod past its
// termination grace period. Later writes fail; a second Close does nothing.
func (r *Redis) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*r.closeWait)
	defer cancel()
	r.waitNeeded(ctx)
	r.drainDeferred(ctx)
	r.mu.Lock()
	r.closing = true
	left := len(r.deferred)
	r.mu.Unlock()
	idle := r.waitNeeded(ctx) // the writes that began before closing
	r.stop()
	r.waitIdle(ctx) // stopped: resolvers end at once
	r.watching.Wait()
	if left > 0 || r.cutOff.Load() > 0 || !idle {
		r.log.Error("store: redis: closed with writes not applied; this instance is left for a restart or the other runtimes to reclaim",
			"deferred", left, "lost", r.cutOff.Load(), "inFlight", !idle)
	} else {
		lctx, lcancel := context.WithTimeout(context.Background(), r.closeWait)
		r.leave(lctx)
		lcancel()
	}
	if err := r.c.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
		return err
	}
	return nil
}
