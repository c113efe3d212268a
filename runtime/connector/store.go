package connector

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/middleware"
	"github.com/ilpfleet/ilpfleet/runtime/store"
)

// openStore opens the store the config names (CONNECTOR_STORE, CONNECTOR_STORE_PATH,
// CONNECTOR_STORE_CONFIG): memory, the embedded file store, or Redis. A store that cannot be
// opened is an error, never a silent fallback to memory, which would lose balances on restart.
func openStore(cfg *config.Config, log *slog.Logger) (store.Store, error) {
	switch cfg.Store {
	case config.StoreMemory:
		return store.NewMemory(), nil
	case config.StoreFile:
		s, err := store.OpenFile(cfg.StorePath)
		if err != nil {
			return nil, fmt.Errorf("connector: store %q (CONNECTOR_STORE_PATH=%s): %w", cfg.Store, cfg.StorePath, err)
		}
		log.Info("opened the embedded store", "path", s.Path())
		warnJSStore(log, cfg.StorePath)
		return s, nil
	case config.StoreRedis:
		o, err := store.ParseRedisOptions(cfg.StorePath, cfg.StoreConfig)
		if err != nil {
			return nil, fmt.Errorf("connector: %w", err)
		}
		o.Log = log
		s, err := store.OpenRedis(context.Background(), o)
		if err != nil {
			return nil, fmt.Errorf("connector: store %q: %w", cfg.Store, err)
		}
		log.Info("opened the Redis store", "instance", s.Instance())
		return s, nil
	}
	return nil, fmt.Errorf("connector: unknown store %q; supported: %s, %s, %s", cfg.Store, config.StoreMemory, config.StoreFile, config.StoreRedis)
}

// warnJSStore warns when dir also holds a LevelDB database (its CURRENT file names a
// MANIFEST-…): the JS connector's store at the same CONNECTOR_STORE_PATH, which a user
// switching may expect to carry over. ilpfleet does not read it — nor does it need to for
// money: the JS connector keeps its balances in memory only, and its store holds plugin and
// routing state — but its balances starting afresh beside those files must not go unremarked.
func warnJSStore(log *slog.Logger, dir string) {
	current, err := os.ReadFile(filepath.Join(dir, "CURRENT"))
	if err != nil || !strings.HasPrefix(string(current), "MANIFEST-") {
		return
	}
	log.Warn("CONNECTOR_STORE_PATH also holds a LevelDB database, most likely the JS connector's; ilpfleet does not read it and keeps its own store beside it, every balance starting at 0 (the JS connector kept none there either); set the balances agreed with each peer through the admin API (POST /balance) if they must carry over",
		"path", dir, "store", filepath.Join(dir, store.FileName))
}

// scopePackets brackets every incoming packet with the store's packet scope when the store has
// one (store.PacketScoper): the packet's balance changes become durable, as one, before its
// answer leaves, and a crash before that leaves no trace of them. A Fulfill is passed on even
// when that write fails (the money left already); the failure is logged for reconciliation and
// counted on the source account's ilp_connector_balance_store_errors{operation="end"}.
func (c *Connector) scopePackets(source string, h ilp.Handler) ilp.Handler {
	ps, ok := c.store.(store.PacketScoper)
	if !ok {
		return h
	}
	return func(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
		pctx := ps.BeginPacket(ctx)
		f, err := h(pctx, p)
		if eerr := ps.EndPacket(pctx); eerr != nil {
			c.endPacketFailed(source, f, err, p.Amount, eerr)
		}
		return f, err
	}
}

// endPacketFailed says that a packet's balance changes are not durable yet (eerr): a WARN when
// the store still applies them (store.AppliedLater: the Redis store kept them through an
// outage), else an ERROR and MetricBalanceStoreErrors, a balance to reconcile.
func (c *Connector) endPacketFailed(source string, f *ilp.Fulfill, err error, amount uint64, eerr error) {
	fulfilled := err == nil && f != nil
	if store.AppliedLater(eerr) {
		c.log.Warn("balance store could not confirm a packet's balance changes; it applies them once it can",
			"account", source, "fulfilled", fulfilled, "amount", amount, "err", eerr)
		return
	}
	c.log.Error("balance store failed to make a packet's balance changes durable; RECONCILIATION REQUIRED",
		"account", source, "fulfilled", fulfilled, "amount", amount, "err", eerr)
	c.metrics.StoreError(source, middleware.OpEndPacket)
}
