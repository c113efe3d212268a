package admin

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/shopspring/decimal"

	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/middleware"
	"github.com/ilpfleet/ilpfleet/runtime/store"
)

// fakeBackend is pure data: the handler's job is the HTTP shape, which this isolates.
type fakeBackend struct {
	address     ilp.Address
	accounts    []AccountInfo
	balances    map[string]BalanceInfo
	balancesErr error
	routes      []RouteInfo
	routing     RoutingInfo
	rates       RatesInfo
	pairRates   map[string]map[string]string // GET /rates rows, decimal strings; a known account without one has an empty row
	rateWaits   []time.Time                  // the deadline of each AccountRates call's ctx (zero: none)

	settlements []SettlementInfo

	mu        sync.Mutex
	alerts    []middleware.Alert
	adjusted  []string // "account:diff"
	dismissed []int64
}

func i64(v int64) *int64                       { return &v }
func u64(v uint64) *uint64                     { return &v }
func boolp(v bool) *bool                       { return &v }
func (f *fakeBackend) Address() ilp.Address    { return f.address }
func (f *fakeBackend) Accounts() []AccountInfo { return f.accounts }
func (f *fakeBackend) Routes() []RouteInfo     { return f.routes }
func (f *fakeBackend) Routing() RoutingInfo    { return f.routing }
func (f *fakeBackend) Rates() RatesInfo        { return f.rates }
func (f *fakeBackend) Alerts() []middleware.Alert {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]middleware.Alert(nil), f.alerts...)
}

// AccountRates answers the row of from; "broken" fails and "vanished" is listed by Accounts
// but gone by now, as after a reload between the two calls.
func (f *fakeBackend) AccountRates(ctx context.Context, from string) (map[string]decimal.Decimal, error) {
	deadline, _ := ctx.Deadline()
	f.rateWaits = append(f.rateWaits, deadline)
	switch {
	case from == "broken":
		return nil, errors.New("backend exploded")
	case from == "vanished", !slices.ContainsFunc(f.accounts, func(a AccountInfo) bool { return a.ID == from }):
		return nil, fmt.Errorf("connector: %w: %s", ErrUnknownAccount, from)
	}
	out := map[string]decimal.Decimal{}
	for dst, r := range f.pairRates[from] {
		out[dst] = decimal.RequireFromString(r)
	}
	return out, nil
}

func (f *fakeBackend) Balances(context.Context) (map[string]BalanceInfo, error) {
	return f.balances, f.balancesErr
}

func (f *fakeBackend) AdjustBalance(_ context.Context, account string, diff int64) error {
	switch account {
	case "ghost":
		return fmt.Errorf("connector: %w: %s", ErrUnknownAccount, account)
	case "capped":
		return &store.LimitError{Account: account, Balance: 1000, Proposed: 1000 + diff, Limit: 1000, Err: store.ErrAboveMaximum}
	case "broken":
		return errors.New("disk full")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.adjusted = append(f.adjusted, fmt.Sprintf("%s:%d", account, diff))
	return nil
}

func (f *fakeBackend) DismissAlert(id int64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dismissed = append(f.dismissed, id)
	for i, a := range f.alerts {
		if a.ID == id {
			f.alerts = append(f.alerts[:i], f.alerts[i+1:]...)
			return true
		}
	}
	return false
}

// newFake is a connector with two accounts, in the shapes JS users know.
func newFake() *fakeBackend {
	paris := time.FixedZone("CET", 3600)
	return &fakeBackend{
		address:     "test.conn",
		settlements: []SettlementInfo{{Account: "bob", Key: "k1", Engine: "http://eng:3000", Amount: 1500}},
		accounts: []AccountInfo{
			{ID: "alice", Connected: true, Config: config.Account{
				Relation: config.RelationChild, Plugin: "ilp-plugin-btp", AssetCode: "USD", AssetScale: 9,
				Balance:         &config.Balance{Maximum: i64(1000), SettleThreshold: i64(-10), SettleTo: 5},
				MaxPacketAmount: u64(500),
				Options:         []byte(`{"secret":"do-not-show"}`),
			}},
			{ID: "bob", Config: config.Account{
				Relation: "peer", Plugin: "ilp-plugin-http", AssetCode: "EUR", AssetScale: 6,
				Throughput:  &config.Throughput{RefillPeriod: time.Second, IncomingAmount: u64(100)},
				RateLimit:   &config.RateLimit{RefillPeriod: time.Minute, RefillCount: 10000, Capacity: 10000},
				Deduplicate: &config.Deduplicate{CleanupInterval: 30 * time.Second, PacketLifetime: 30 * time.Second},
				SendRoutes:  boolp(true), ReceiveRoutes: boolp(false),
			}},
		},
		balances: map[string]BalanceInfo{
			"alice": {Balance: 42, Maximum: i64(1000)},
			"bob":   {Balance: -7, Minimum: i64(-50)},
		},
		routes: []RouteInfo{
			{Prefix: "test.conn.alice", NextHop: "alice"},
			{Prefix: "test.peer", NextHop: "bob", Path: []string{"test.peer", "test.far"}},
		},
		routing: RoutingInfo{
			TableID: "b7d6e1c2-0000-4000-8000-000000000001", Epoch: 3,
			Local: []RouteInfo{{Prefix: "test.conn.alice", NextHop: "alice"}},
			Forwarding: []RouteUpdate{
				{Prefix: "test.conn.alice", Route: &RouteInfo{NextHop: "alice", Path: []string{"test.conn"}}, Epoch: 1},
				{Prefix: "test.gone", Epoch: 3},
			},
			Log: []RouteUpdate{
				{Prefix: "test.conn.alice", Route: &RouteInfo{NextHop: "alice", Path: []string{"test.conn"}}, Epoch: 1},
				{Prefix: "test.gone", Epoch: 3},
			},
			Peers: map[string]PeerRouting{
				"bob":   {Send: &PeerSend{Epoch: 3, Mode: "SYNC"}, Receive: &PeerReceive{RoutingTableID: "abc", Epoch: 2}},
				"carol": {},
			},
		},
		rates: RatesInfo{Backend: "static", Rates: map[string]string{"USD": "1.0835", "EUR": "1"}},
		// alice USD scale 9, bob EUR scale 6, spread 0.01: 1/1.0835·10^-3·0.99 and
		// 1.0835·10^3·0.99, the static backend's rates to 15 digits.
		pairRates: map[string]map[string]string{
			"alice": {"bob": "0.000913705583756345"},
			"bob":   {"alice": "1072.665"},
		},
		alerts: []middleware.Alert{{
			ID: 1700000000000, AccountID: "bob", TriggeredBy: "test.peer", Message: "exceeded maximum balance.", Count: 2,
			CreatedAt: time.Date(2024, 1, 2, 4, 5, 6, 789123456, paris),
			UpdatedAt: time.Date(2024, 1, 2, 3, 5, 7, 0, time.UTC),
		}},
	}
}

func (f *fakeBackend) Settlements(context.Context) ([]SettlementInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]SettlementInfo(nil), f.settlements...), nil
}

func (f *fakeBackend) ForgetSettlement(_ context.Context, key string) (bool, error) {
	if key == "broken" {
		return false, errors.New("store closed")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, s := range f.settlements {
		if s.Key == key {
			f.settlements = append(f.settlements[:i], f.settlements[i+1:]...)
			return true, nil
		}
	}
	return false, nil
}
