package connector

import (
	"context"
	"fmt"
	"sort"

	"github.com/ilpfleet/ilpfleet/runtime/admin"
	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/settlement"
)

// newSettler is the connector's settler. A settlement changes a balance outside the packet
// path: the balance gauge then follows the store.
func (c *Connector) newSettler(m *settlement.Metrics) *settlement.Settler {
	return settlement.New(settlement.Options{Store: c.store, Send: c.sendPeer, Log: c.log.With("component", "settlement"), Metrics: m,
		OnSettled: func(ctx context.Context, id string) { c.metrics.ObserveStoredBalance(ctx, c.store, id) }})
}

// settlementAccounts are the accounts of cfg that have a settlement engine.
func settlementAccounts(cfg *config.Config) []settlement.Account {
	var out []settlement.Account
	for id, ac := range cfg.Accounts {
		if ac.SettlementEngine == nil {
			continue
		}
		a := settlement.Account{ID: id, EngineURL: ac.SettlementEngine.URL, AssetScale: ac.AssetScale, Every: ac.SettlementEngine.SettleEvery}
		if b := ac.Balance; b != nil {
			a.Threshold, a.SettleTo = b.SettleThreshold, b.SettleTo
		}
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// settlementAPI is the listener of the API the settlement engines call, started once the first
// account with an engine is in force and kept until Close (its address is a global setting).
type settlementAPI struct {
	srv    *admin.Server
	cancel context.CancelFunc
	host   string // where it listens, as configured when it was bound
	port   int
}

// syncSettlement serves the engines' API when cfg has an account with an engine and gives the
// settler cfg's accounts. Start calls it with applyMu held. Apply does both itself: it calls
// serveSettlementAPI before anything is in force, so that a port it cannot bind refuses the
// config instead of leaving an engine with nowhere to report incoming settlements, and updates
// the settler after its commit.
func (c *Connector) syncSettlement(cfg *config.Config) error {
	if err := c.serveSettlementAPI(cfg); err != nil {
		return err
	}
	return c.settler.Update(settlementAccounts(cfg))
}

// serveSettlementAPI starts the engines' API if cfg has an account with an engine and it is
// not served yet; it is kept until Close (its address is a global setting).
func (c *Connector) serveSettlementAPI(cfg *config.Config) error {
	if c.settleAPI.srv != nil || len(settlementAccounts(cfg)) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := admin.Serve(ctx, cfg.SettlementAPIHost, cfg.SettlementAPIPort, c.settler.Handler())
	if err != nil {
		cancel()
		return fmt.Errorf("connector: settlement API (settlementApiHost/settlementApiPort): %w", err)
	}
	c.settleAPI = settlementAPI{srv: srv, cancel: cancel, host: cfg.SettlementAPIHost, port: cfg.SettlementAPIPort}
	c.log.Info("settlement API listening", "addr", srv.Addr())
	return nil
}

// stopSettlement stops the settler and the engines' API. Settlements being retried stay
// recorded in the store for the next start.
func (c *Connector) stopSettlement() {
	c.settler.Close()
	if c.settleAPI.srv != nil {
		c.settleAPI.cancel()
		<-c.settleAPI.srv.Done()
	}
}
