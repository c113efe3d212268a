package connector

import (
	"context"
	"fmt"
	"slices"
	"sort"

	"github.com/shopspring/decimal"

	"github.com/ilpfleet/ilpfleet/runtime/admin"
	"github.com/ilpfleet/ilpfleet/runtime/middleware"
	"github.com/ilpfleet/ilpfleet/runtime/rates"
)

// The connector is what the admin API reads.
var _ admin.Backend = (*Connector)(nil)

// sortedAccounts returns the running accounts by id.
func (c *Connector) sortedAccounts() []*account {
	m := *c.accounts.Load()
	out := make([]*account, 0, len(m))
	for _, a := range m {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// Accounts lists the accounts with their config and whether their link is connected.
func (c *Connector) Accounts() []admin.AccountInfo {
	as := c.sortedAccounts()
	out := make([]admin.AccountInfo, len(as))
	for i, a := range as {
		out[i] = admin.AccountInfo{ID: a.id, Config: a.pipes.Load().cfg, Connected: a.link.Connected()}
	}
	return out
}

// Connected reports whether the link of account id is up.
func (c *Connector) Connected(id string) bool {
	a := (*c.accounts.Load())[id]
	return a != nil && a.link.Connected()
}

// Balances returns the balance and limits of the accounts with balance limits, as JS.
func (c *Connector) Balances(ctx context.Context) (map[string]admin.BalanceInfo, error) {
	out := map[string]admin.BalanceInfo{}
	for _, a := range c.sortedAccounts() {
		b := a.pipes.Load().cfg.Balance
		if b == nil {
			continue
		}
		ab, err := c.store.Get(ctx, a.id)
		if err != nil {
			return nil, fmt.Errorf("connector: balance of account %s: %w", a.id, err)
		}
		out[a.id] = admin.BalanceInfo{Balance: ab.Balance, Minimum: b.Minimum, Maximum: b.Maximum}
	}
	return out, nil
}

// Balance returns the committed balance of one account (zero if it never moved).
func (c *Connector) Balance(ctx context.Context, id string) (int64, error) {
	ab, err := c.store.Get(ctx, id)
	return ab.Balance, err
}

// AdjustBalance adds diff to an account's balance, checked against its limits as JS
// modifyBalance does — a rise against the maximum, a fall against the minimum, so that a
// correction toward the limits always passes (a refusal wraps store.ErrAboveMaximum or
// store.ErrBelowMinimum) — updates the balance gauge and, below the settlement threshold,
// settles as a packet would.
func (c *Connector) AdjustBalance(ctx context.Context, id string, diff int64) error {
	a := (*c.accounts.Load())[id]
	if a == nil {
		return fmt.Errorf("%w: %s", admin.ErrUnknownAccount, id)
	}
	var min, max *int64
	if b := a.pipes.Load().cfg.Balance; b != nil {
		min, max = b.Minimum, b.Maximum
	}
	if diff > 0 {
		min = nil
	} else {
		max = nil
	}
	b, err := c.store.AddWithin(ctx, id, diff, min, max)
	if err != nil {
		return fmt.Errorf("connector: adjusting the balance of %s by %d: %w", id, diff, err)
	}
	c.metrics.ObserveBalance(id, b)
	c.settler.BalanceChanged(id, b)
	return nil
}

// Routes is the routing table, sorted by prefix.
func (c *Connector) Routes() []admin.RouteInfo {
	rs := c.table.Load().Routes()
	out := make([]admin.RouteInfo, len(rs))
	for i, r := range rs {
		out[i] = admin.RouteInfo{Prefix: r.Prefix, NextHop: r.NextHop, Path: slices.Clone(r.Path)}
	}
	return out
}

// Routing is the CCP state (GET /routing): see routingStatus in ccp.go.
func (c *Connector) Routing() admin.RoutingInfo { return c.routingStatus() }

// AccountRates is one row of GET /rates, as the JS rate backend's getStatus lists it: for every
// other account, the rate a packet from account from to it converts at. It is the converter's
// own rate for the two accounts' assets with the spread in force (see rate), so it cannot
// drift from what packets do. A pair a packet would be refused for now is left out.
func (c *Connector) AccountRates(ctx context.Context, from string) (map[string]decimal.Decimal, error) {
	accounts := *c.accounts.Load()
	src := accounts[from]
	if src == nil {
		return nil, fmt.Errorf("%w: %s", admin.ErrUnknownAccount, from)
	}
	s := c.settings.Load()
	// Many accounts share an asset: price each destination asset once (nil: cannot price).
	byAsset := map[rates.Asset]*decimal.Decimal{}
	out := make(map[string]decimal.Decimal, len(accounts))
	for id, dst := range accounts {
		if id == from {
			continue
		}
		r, seen := byAsset[dst.asset]
		if !seen {
			r = s.rate(ctx, src.asset, dst.asset)
			byAsset[dst.asset] = r
		}
		if r != nil {
			out[id] = *r
		}
	}
	return out, nil
}

// rate is the scaled rate that convert multiplies a packet's amount by from src to dst, or nil
// when a packet would be refused (T00: an asset without a rate, no current ecb rates). A
// backend that must fetch waits no longer than ctx, the admin request's.
func (s *settings) rate(ctx context.Context, src, dst rates.Asset) *decimal.Decimal {
	r, err := s.conv.RateContext(ctx, src, dst, s.spread)
	if err != nil {
		return nil
	}
	d := r.Decimal()
	return &d
}

// Rates (GET /rates/backend) is the backend's name and, for a backend with a rate table,
// ECB-style rates of the account assets against one of them (see accountRates), since the
// backends do not expose their base; for a backend that fetches its rates, where they come
// from and how old they are (read after the lookups, which may have fetched).
func (c *Connector) Rates() admin.RatesInfo {
	b := c.settings.Load().conv.Backend()
	info := admin.RatesInfo{Backend: b.Name()}
	if b.Name() == rates.NameOneToOne {
		return info
	}
	info.Rates = c.accountRates(b)
	if f, ok := b.(rates.Fetcher); ok {
		st := f.Status()
		info.Source = &admin.RatesSource{URL: st.URL, Date: st.Date, FetchedAt: st.FetchedAt, Fresh: st.Fresh, LastError: st.LastError}
	}
	return info
}

// accountRates are the rates of the accounts' assets against the one of them that prices the
// most (the first in code order among equals); assets without a rate are left out (a config
// may name an asset the backend lacks, and it must not hide the others).
func (c *Connector) accountRates(b rates.Backend) map[string]string {
	var codes []string
	for _, a := range c.sortedAccounts() {
		if !slices.Contains(codes, a.asset.Code) {
			codes = append(codes, a.asset.Code)
		}
	}
	slices.Sort(codes)
	best := map[string]string{}
	for _, base := range codes {
		out := map[string]string{}
		for _, code := range codes {
			if r, err := b.Rate(base, code); err == nil {
				out[code] = r.String()
			}
		}
		if len(out) > len(best) {
			best = out
		}
	}
	return best
}

// Alerts lists the alerts, by ascending ID.
func (c *Connector) Alerts() []middleware.Alert { return c.alerts.List() }

// DismissAlert deletes an alert and reports whether it existed.
func (c *Connector) DismissAlert(id int64) bool { return c.alerts.Dismiss(id) }

// Settlements implements admin.Backend.
func (c *Connector) Settlements(ctx context.Context) ([]admin.SettlementInfo, error) {
	ps, err := c.settler.Pending(ctx)
	out := make([]admin.SettlementInfo, len(ps))
	for i, p := range ps {
		out[i] = admin.SettlementInfo{Account: p.Account, Key: p.Key, Engine: p.Engine, Amount: p.Amount}
	}
	return out, err
}

// ForgetSettlement implements admin.Backend.
func (c *Connector) ForgetSettlement(ctx context.Context, key string) (bool, error) {
	return c.settler.Forget(ctx, key)
}
