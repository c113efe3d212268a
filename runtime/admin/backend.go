package admin

import (
	"context"
	"errors"
	"time"

	"github.com/shopspring/decimal"

	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/middleware"
)

// Backend is what the admin API reads from, and changes in, the running connector.
// The connector core implements it. Every method must be safe for concurrent use; the
// handler calls each at most once per request and never on the packet path.
type Backend interface {
	// Address is the connector's own ILP address; empty before IL-DCP has answered
	// (shown as "unknown", as JS does).
	Address() ilp.Address
	// Accounts lists the configured accounts, sorted by ID.
	Accounts() []AccountInfo
	// Balances returns the balance and limits of every account that has a balance
	// middleware (as in JS, accounts without a balance setting are absent).
	Balances(ctx context.Context) (map[string]BalanceInfo, error)
	// AdjustBalance adds diff (either sign) to an account's balance, checked against its
	// limits as JS modifyBalance does. Errors: wrapping ErrUnknownAccount for an account
	// that is not configured (404), wrapping store.ErrAboveMaximum, store.ErrBelowMinimum
	// or store.ErrOverflow for a refused change (409); anything else is a 500.
	AdjustBalance(ctx context.Context, account string, diff int64) error
	// Routes is the local routing table.
	Routes() []RouteInfo
	// Routing is the route broadcaster's (CCP) state; zero values while CCP is absent.
	Routing() RoutingInfo
	// Rates is the rate backend's status (GET /rates/backend).
	Rates() RatesInfo
	// AccountRates is one row of GET /rates: for each account other than from, the rate the
	// connector converts a packet's amount with from account from to it (destination base
	// units per source base unit, spread and asset scales applied), as the JS rate backend's
	// getRate answers it. A pair that a packet could not be converted for now (an asset the
	// backend has no rate for, a fetching backend without current rates) is left out. Errors:
	// wrapping ErrUnknownAccount for an account that is not configured (404); anything else
	// is a 500.
	AccountRates(ctx context.Context, from string) (map[string]decimal.Decimal, error)
	// Alerts lists the alerts, by ascending ID (middleware.Alerts.List).
	Alerts() []middleware.Alert
	// DismissAlert deletes an alert and reports whether it existed (middleware.Alerts.Dismiss).
	DismissAlert(id int64) bool
	// Settlements lists the outgoing settlements recorded and not yet accepted by an engine.
	Settlements(ctx context.Context) ([]SettlementInfo, error)
	// ForgetSettlement drops a pending settlement an operator settled by other means, and
	// reports whether it was pending.
	ForgetSettlement(ctx context.Context, key string) (bool, error)
}

// SettlementInfo is one pending outgoing settlement (ilpfleet's own; JS settles in plugins).
type SettlementInfo struct {
	Account, Key, Engine string
	Amount               int64 // in the account's units
}

// ErrUnknownAccount is returned (wrapped) by Backend.AdjustBalance and Backend.AccountRates
// for an account that is not configured, so that the admin API answers 404 rather than 500.
var ErrUnknownAccount = errors.New("unknown account")

// AccountInfo is one account as GET /accounts and GET /status show it.
type AccountInfo struct {
	ID string
	// Config is the account's configuration. The admin API never shows Config.Options,
	// which hold the plugin's credentials (JS strips them too).
	Config    config.Account
	Connected bool
}

// BalanceInfo is one account's committed balance and its limits. A nil limit is unbounded
// and printed as JS prints an infinite BigNumber: "-Infinity" / "Infinity".
type BalanceInfo struct {
	Balance int64
	Minimum *int64
	Maximum *int64
}

// RouteInfo is one route of a routing table.
type RouteInfo struct {
	Prefix  string
	NextHop string   // account ID
	Path    []string // ILP addresses of the connectors on the way; empty for local and configured routes
}

// RoutingInfo is the CCP route broadcaster's state (JS RouteBroadcaster.getStatus).
type RoutingInfo struct {
	TableID    string        // forwarding routing table ID (a UUID)
	Epoch      uint32        // current epoch of the forwarding table
	Local      []RouteInfo   // local routing table (what packets are forwarded by)
	Forwarding []RouteUpdate // forwarding table (what we advertise), by prefix
	Log        []RouteUpdate // forwarding table changes, by epoch
	Peers      map[string]PeerRouting
}

// RouteUpdate is a prefix's forwarding route as of an epoch; a nil Route is a withdrawal.
type RouteUpdate struct {
	Prefix string
	Route  *RouteInfo
	Epoch  uint32
}

// PeerRouting is the CCP state with one peer account.
type PeerRouting struct {
	Send    *PeerSend    // nil when we send no routes to this peer
	Receive *PeerReceive // nil when we accept no routes from it
}

// PeerSend is our route sender to a peer: the epoch it has acknowledged and its mode.
type PeerSend struct {
	Epoch uint32
	Mode  string // "IDLE" or "SYNC"
}

// PeerReceive is the peer's routing table ID and epoch as we last received them.
type PeerReceive struct {
	RoutingTableID string
	Epoch          uint32
}

// RatesInfo is the rate backend's status (GET /rates/backend). Rates maps asset codes to
// decimal strings, never floats (ECB style: units of the asset per unit of the base); nil
// when the backend has no table (one-to-one).
type RatesInfo struct {
	Backend string
	Rates   map[string]string
	Source  *RatesSource // where a fetching backend (ecb) got its rates; nil for the others
}

// RatesSource is the state of a fetching backend's rates: when an operator should worry.
type RatesSource struct {
	URL       string    // without password or query
	Date      string    // the publisher's date of the rates, "" when none yet
	FetchedAt time.Time // zero when none yet
	Fresh     bool      // younger than maxAge: packets convert with them
	LastError string    // the last fetch error, "" after a success
}
