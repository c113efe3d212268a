package config

import (
	"encoding/json"
	"time"

	"github.com/shopspring/decimal"
)

// Names the config accepts. Env values follow the JS schema; plugins, backends and stores are
// the ones the Go runtime implements.
const (
	EnvTest       = "test"
	EnvProduction = "production"

	DefaultRouteAuto = "auto" // CONNECTOR_DEFAULT_ROUTE: the first parent

	PluginBTP          = "ilp-plugin-btp"
	PluginMiniAccounts = "ilp-plugin-mini-accounts"
	PluginHTTP         = "ilp-plugin-http"

	BackendOneToOne = "one-to-one"
	BackendStatic   = "static"
	BackendECB      = "ecb"

	StoreMemory = "memory"
	StoreFile   = "file"
	StoreRedis  = "redis"
)

// SupportedPlugins, SupportedBackends and SupportedStores list the names Validate accepts.
var (
	SupportedPlugins  = []string{PluginBTP, PluginMiniAccounts, PluginHTTP}
	SupportedBackends = []string{BackendOneToOne, BackendStatic, BackendECB}
	SupportedStores   = []string{StoreMemory, StoreFile, StoreRedis}
)

// networkBackends are the JS backends that fetch prices from public APIs other than the ECB's
// (Ripple Data, CoinMarketCap; fixer.io in older versions). The Go runtime fetches only the
// ECB's rates (backend ecb), so these get an error that says what to use instead.
var networkBackends = map[string]bool{
	"ecb-plus-xrp": true, "ecb-plus-coinmarketcap": true,
	"fixerio": true, "fixerio-plus-xrp": true, "fixerio-plus-coinmarketcap": true,
}

// storeAliases maps the JS store module names to the Go stores with the same durability:
// memdown is in memory, leveldown is an embedded on-disk database at storePath, and
// ilp-store-redis is Redis (its ioredis storeConfig is read by store.ParseRedisOptions).
var storeAliases = map[string]string{"memdown": StoreMemory, "leveldown": StoreFile, "ilp-store-redis": StoreRedis}

// middlewareNames are the built-in JS middlewares CONNECTOR_DISABLE_MIDDLEWARE may name
// (the enum of the JS schema).
var middlewareNames = []string{
	"errorHandler", "rateLimit", "balance", "maxPacketAmount", "throughput",
	"deduplicate", "validateFulfillment", "expire", "stats", "alert",
}

// Per-account middleware defaults of the JS connector (src/middlewares/*.ts).
const (
	DefaultRateLimitRefillPeriod  = 60 * time.Second
	DefaultRateLimitRefillCount   = 10000
	DefaultThroughputRefillPeriod = time.Second
	DefaultDedupeCleanupInterval  = 30 * time.Second
	DefaultDedupePacketLifetime   = 30 * time.Second
)

// DefaultMaxHoldTime is the JS connector's maxHoldTime: how long a packet may be held, and
// what the operator sizes a pod's termination grace period by when a Connector sets none.
const DefaultMaxHoldTime = 30 * time.Second

// DefaultRateLimit is the token bucket the JS connector applies to an account without a
// rateLimit setting.
func DefaultRateLimit() RateLimit {
	return RateLimit{
		RefillPeriod: DefaultRateLimitRefillPeriod,
		RefillCount:  DefaultRateLimitRefillCount,
		Capacity:     DefaultRateLimitRefillCount,
	}
}

// DefaultDeduplicate is the dedupe cache tuning for an account without a deduplicate setting.
func DefaultDeduplicate() Deduplicate {
	return Deduplicate{CleanupInterval: DefaultDedupeCleanupInterval, PacketLifetime: DefaultDedupePacketLifetime}
}

// Defaults returns the JS connector's defaults (src/schemas/Config.json), with these
// deliberate differences, each documented in docs/configuration.md:
//   - ILPAddress is "" where JS says "unknown": both mean "inherit it from a parent".
//   - Backend is "one-to-one" where JS says "ecb": the connector reaches the Internet only
//     when told to (backend "ecb").
//     The sources refuse a config that relies on the JS default while mixing asset codes.
//   - Store is "memory" where JS says "leveldown"; the sources pick "file" when a store path
//     is given without a store, which is what the JS default does with CONNECTOR_STORE_PATH.
func Defaults() *Config {
	return &Config{
		Env:                    EnvTest,
		ILPAddress:             "",
		ILPAddressInheritFrom:  "",
		Accounts:               map[string]Account{},
		DefaultRoute:           DefaultRouteAuto,
		Routes:                 []Route{},
		Spread:                 decimal.RequireFromString("0.002"),
		MinMessageWindow:       1000 * time.Millisecond,
		MaxHoldTime:            DefaultMaxHoldTime,
		RouteBroadcastEnabled:  true,
		RouteBroadcastInterval: 30000 * time.Millisecond,
		RouteCleanupInterval:   1000 * time.Millisecond,
		RouteExpiry:            45000 * time.Millisecond,
		RoutingSecret:          nil,
		Backend:                BackendOneToOne,
		BackendConfig:          json.RawMessage(`{}`),
		Store:                  StoreMemory,
		StorePath:              "",
		StoreConfig:            json.RawMessage(`{}`),
		DisableMiddleware:      []string{},
		ReflectPayments:        true,
		InitialConnectTimeout:  10000 * time.Millisecond,
		AdminAPI:               false,
		AdminAPIHost:           "127.0.0.1",
		AdminAPIPort:           7780,
		CollectDefaultMetrics:  false,
		SettlementAPIHost:      "127.0.0.1",
		SettlementAPIPort:      7771, // interledger-rs's, which engines written for it expect
	}
}
