// Package config is the runtime config model — the one contract between the world and the
// connector runtime — and its sources: environment (the JS connector's CONNECTOR_* variables),
// file (YAML/JSON), and Kubernetes. Every source builds a *Config and validates it with
// Validate; the runtime applies a new model as a diff against the running one.
package config

import (
	"encoding/json"
	"time"

	"github.com/shopspring/decimal"
)

// Relation is how an account's counterparty relates to this connector.
type Relation string

// The three relations of the JS connector and RFC 34.
const (
	RelationParent Relation = "parent"
	RelationPeer   Relation = "peer"
	RelationChild  Relation = "child"
)

// Config is the whole runtime configuration. Field comments name the JS variable they mirror;
// defaults are the JS connector's (see Defaults).
type Config struct {
	Env                    string             // CONNECTOR_ENV: "test" or "production"
	ILPAddress             string             // CONNECTOR_ILP_ADDRESS; "" with ILPAddressInheritFrom set or a parent
	ILPAddressInheritFrom  string             // CONNECTOR_ILP_ADDRESS_INHERIT_FROM: account id of a parent
	Accounts               map[string]Account // CONNECTOR_ACCOUNTS, by account id
	AccountOrder           []string           // account ids in source order ("first parent" in JS); may be nil
	DefaultRoute           string             // CONNECTOR_DEFAULT_ROUTE: "auto" (first parent), "" (none) or an account id
	Routes                 []Route            // CONNECTOR_ROUTES
	Spread                 decimal.Decimal    // CONNECTOR_SPREAD, a fraction: 0.002 = 0.2 %
	MinMessageWindow       time.Duration      // CONNECTOR_MIN_MESSAGE_WINDOW
	MaxHoldTime            time.Duration      // CONNECTOR_MAX_HOLD_TIME
	RouteBroadcastEnabled  bool               // CONNECTOR_ROUTE_BROADCAST_ENABLED
	RouteBroadcastInterval time.Duration      // CONNECTOR_ROUTE_BROADCAST_INTERVAL
	RouteCleanupInterval   time.Duration      // CONNECTOR_ROUTE_CLEANUP_INTERVAL
	RouteExpiry            time.Duration      // CONNECTOR_ROUTE_EXPIRY
	RoutingSecret          []byte             // CONNECTOR_ROUTING_SECRET (base64 in the env var); random when empty
	Backend                string             // CONNECTOR_BACKEND: "one-to-one", "static"
	BackendConfig          json.RawMessage    // CONNECTOR_BACKEND_CONFIG
	Store                  string             // CONNECTOR_STORE: "memory", "file", "redis"
	StorePath              string             // CONNECTOR_STORE_PATH
	StoreConfig            json.RawMessage    // CONNECTOR_STORE_CONFIG
	DisableMiddleware      []string           // CONNECTOR_DISABLE_MIDDLEWARE: built-in names, e.g. "rateLimit"
	ReflectPayments        bool               // CONNECTOR_REFLECT_PAYMENTS
	InitialConnectTimeout  time.Duration      // CONNECTOR_INITIAL_CONNECT_TIMEOUT
	AdminAPI               bool               // CONNECTOR_ADMIN_API
	AdminAPIHost           string             // CONNECTOR_ADMIN_API_HOST
	AdminAPIPort           int                // CONNECTOR_ADMIN_API_PORT
	CollectDefaultMetrics  bool               // CONNECTOR_COLLECT_DEFAULT_METRICS
	// ilpfleet's own settings (the JS connector settles through plugins, not engines):
	SettlementAPIHost string // CONNECTOR_SETTLEMENT_API_HOST: where settlement engines call the connector (RFC 38)
	SettlementAPIPort int    // CONNECTOR_SETTLEMENT_API_PORT; served only when an account has a settlement engine
}

// Route is a static route: packets for TargetPrefix go to account PeerID.
type Route struct {
	TargetPrefix string `json:"targetPrefix"`
	PeerID       string `json:"peerId"`
}

// Account is one entry of CONNECTOR_ACCOUNTS. Optional settings are pointers: nil means the
// setting is absent and its middleware does not apply (or uses the JS default, as noted).
type Account struct {
	Relation          Relation        `json:"relation"`
	Plugin            string          `json:"plugin"` // "ilp-plugin-btp", "ilp-plugin-mini-accounts", …
	AssetCode         string          `json:"assetCode"`
	AssetScale        uint8           `json:"assetScale"`
	Balance           *Balance        `json:"balance,omitempty"`
	MaxPacketAmount   *uint64         `json:"maxPacketAmount,omitempty"`
	Throughput        *Throughput     `json:"throughput,omitempty"`
	RateLimit         *RateLimit      `json:"rateLimit,omitempty"`   // nil: DefaultRateLimit() applies, as in JS
	Deduplicate       *Deduplicate    `json:"deduplicate,omitempty"` // nil: DefaultDeduplicate() applies
	SendRoutes        *bool           `json:"sendRoutes,omitempty"`  // nil: false for children, true otherwise
	ReceiveRoutes     *bool           `json:"receiveRoutes,omitempty"`
	ILPAddressSegment string          `json:"ilpAddressSegment,omitempty"` // children only; default the account id
	Options           json.RawMessage `json:"options,omitempty"`           // the plugin's own options, as in JS
	// SettlementEngine settles the account's balance (RFC 38); ilpfleet's own setting. nil:
	// no settlement, as with a JS plugin that has no sendMoney.
	SettlementEngine *SettlementEngine `json:"settlementEngine,omitempty"`
}

// SettlementEngine is the settlement engine of an account.
type SettlementEngine struct {
	URL string `json:"url"` // base URL of the engine's RFC 38 API, http:// or https://
	// SettleEvery settles, at start and then at this interval, whatever the balance is below
	// balance.settleTo, even when it has not fallen below the threshold; 0: at the threshold
	// only.
	SettleEvery time.Duration `json:"settleEvery,omitempty"`
}

// SendsRoutes reports whether CCP route broadcasts go to this account: SendRoutes if set,
// else false for children and true otherwise (JS).
func (a *Account) SendsRoutes() bool {
	if a.SendRoutes != nil {
		return *a.SendRoutes
	}
	return a.Relation != RelationChild
}

// ReceivesRoutes reports whether CCP route updates from this account are processed:
// ReceiveRoutes if set, else false for children and true otherwise (JS).
func (a *Account) ReceivesRoutes() bool {
	if a.ReceiveRoutes != nil {
		return *a.ReceiveRoutes
	}
	return a.Relation != RelationChild
}

// Balance limits in the account's base units. Minimum nil is "-Infinity", the JS default;
// Maximum is required by the JS schema whenever balance is given. Positive balance: the peer owes us (RFC 32).
// A nil bound is unbounded ("-Infinity" / "Infinity" in JS). The degenerate JS bounds
// minimum "Infinity" and maximum "-Infinity" (refuse every packet) are kept as
// math.MaxInt64 / math.MinInt64, and integer strings beyond int64 saturate to those values.
// SettleThreshold nil (or "-Infinity") means never settle automatically.
type Balance struct {
	Minimum         *int64 `json:"minimum,omitempty"`
	Maximum         *int64 `json:"maximum,omitempty"`
	SettleThreshold *int64 `json:"settleThreshold,omitempty"`
	SettleTo        int64  `json:"settleTo"`
}

// Throughput limits the amount per RefillPeriod in each direction; a nil amount is unlimited.
type Throughput struct {
	RefillPeriod   time.Duration `json:"refillPeriod"` // default 1 s
	IncomingAmount *uint64       `json:"incomingAmount,omitempty"`
	OutgoingAmount *uint64       `json:"outgoingAmount,omitempty"`
}

// RateLimit is a token bucket of incoming packets. When the object is given, the sources fill
// in missing fields with the defaults the JS middleware applies in code
// (src/middlewares/rate-limit.ts): 60 s, 10000 and capacity = RefillCount. (The JS README says the period defaults to one second; the
// JS code, which is what users observe, uses one minute.)
type RateLimit struct {
	RefillPeriod time.Duration `json:"refillPeriod"` // default 60 s
	RefillCount  uint64        `json:"refillCount"`  // default 10000
	Capacity     uint64        `json:"capacity"`     // default RefillCount
}

// Deduplicate tunes the outgoing dedupe cache.
type Deduplicate struct {
	CleanupInterval time.Duration `json:"cleanupInterval"` // default 30 s
	PacketLifetime  time.Duration `json:"packetLifetime"`  // default 30 s
}
