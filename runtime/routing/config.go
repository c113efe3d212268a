package routing

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// GlobalPrefix is the prefix the default route covers on a network, as the JS connector's
// getGlobalPrefix: "g" on production, "test" on test. An empty env is the JS default, test.
func GlobalPrefix(env string) (string, error) {
	switch env {
	case config.EnvProduction:
		return "g", nil
	case config.EnvTest, "":
		return "test", nil
	}
	return "", fmt.Errorf("routing: env %q is neither %q nor %q, so the default route has no global prefix", env, config.EnvTest, config.EnvProduction)
}

// InNetwork reports whether a CCP route for prefix belongs to the network whose global prefix
// is global (GlobalPrefix): it lies under one of the network's address schemes and is longer
// than the scheme alone (the default route is never exchanged). On test those schemes are the
// RFC 15 test schemes, test, test1, test2 and test3 (ilp.IsTestScheme); otherwise the global
// prefix itself ("g"). The JS connector compares bytes
// (prefix.startsWith(globalPrefix) and longer), which takes the same test1-3 prefixes but also
// nonsense such as "testing.x"; matching whole schemes keeps that out. Both the routes we
// accept and the routes we advertise use this one rule.
func InNetwork(prefix, global string) bool {
	scheme, rest, ok := strings.Cut(prefix, ".")
	if !ok || rest == "" {
		return false
	}
	if global == "test" {
		return ilp.IsTestScheme(scheme)
	}
	return scheme == global
}

// ChildAddress is the address a child account gets under ownAddress: ownAddress + "." +
// (ilpAddressSegment, or the account id when it is empty), as the JS getChildAddress.
func ChildAddress(ownAddress, id string, a config.Account) string {
	seg := a.ILPAddressSegment
	if seg == "" {
		seg = id
	}
	return ownAddress + "." + seg
}

// DefaultRouteAccount resolves CONNECTOR_DEFAULT_ROUTE to an account id, or "" for none.
//
// "auto" picks the first parent as the JS connector does (config.Config.DefaultRouteAccount:
// the order of the accounts object), the same parent the address is inherited from. Any
// other value must be the id of an existing account.
func DefaultRouteAccount(cfg *config.Config) (string, error) {
	switch cfg.DefaultRoute {
	case "", config.DefaultRouteAuto:
		return cfg.DefaultRouteAccount(), nil
	}
	if _, ok := cfg.Accounts[cfg.DefaultRoute]; !ok {
		return "", fmt.Errorf("defaultRoute: account %q does not exist (accounts: %s); use \"auto\" for the first parent or \"\" for no default route",
			cfg.DefaultRoute, listIDs(cfg.Accounts))
	}
	return cfg.DefaultRoute, nil
}

// FromConfig builds the routing table of cfg for a connector whose address is ownAddress (the
// configured address, or the one IL-DCP gave it; "" while it is not known yet, in which case
// there is no local route and there may be no children). learned are routes from CCP; those
// whose next hop is not an account of cfg are dropped, since the account may just have been
// removed.
//
// The table holds:
//   - ownAddress → local (no next hop);
//   - every child: ownAddress.<ilpAddressSegment or id> → the child;
//   - the default route: the global prefix of cfg.Env → the account of DefaultRouteAccount;
//   - every CONNECTOR_ROUTES entry: targetPrefix → peerId, which beats any other route for the
//     same prefix (a longer prefix still wins);
//   - learned routes, which lose to all the above for the same prefix.
//
// Every problem of cfg is reported at once, each naming its JS setting.
func FromConfig(cfg *config.Config, ownAddress string, learned ...Route) (*Table, error) {
	b := NewBuilder()
	var errs []error
	errs = append(errs, addLocal(b, cfg, ownAddress)...)
	errs = append(errs, addDefault(b, cfg)...)
	errs = append(errs, addStatic(b, cfg)...)
	for _, r := range learned {
		a, ok := cfg.Accounts[r.NextHop]
		if !ok {
			continue
		}
		r.Source, r.Relation = SourceLearned, a.Relation
		if err := b.Add(r); err != nil {
			errs = append(errs, fmt.Errorf("learned route via %s: %w", r.NextHop, err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return b.Build(), nil
}

func addLocal(b *Builder, cfg *config.Config, own string) []error {
	var errs []error
	if own != "" {
		if err := ValidatePrefix(own); err != nil {
			return []error{fmt.Errorf("ilpAddress: %w", err)}
		}
		_ = b.Add(Route{Prefix: own, Source: SourceLocal})
	}
	taken := make(map[string]string) // child address → account id
	for _, id := range sortedIDs(cfg.Accounts) {
		a := cfg.Accounts[id]
		if a.Relation != config.RelationChild {
			continue
		}
		if own == "" {
			errs = append(errs, fmt.Errorf("accounts.%s: a child account needs the connector's ILP address, which is not known (set ilpAddress or a parent to inherit it from)", id))
			continue
		}
		seg := a.ILPAddressSegment
		if seg == "" {
			seg = id
		}
		if err := ValidateSegment(seg); err != nil {
			errs = append(errs, fmt.Errorf("accounts.%s: the child address segment (ilpAddressSegment, or the account id): %w", id, err))
			continue
		}
		addr := own + "." + seg
		if other, dup := taken[addr]; dup {
			errs = append(errs, fmt.Errorf("accounts.%s: child address %s is already the address of account %s; give one of them another ilpAddressSegment", id, addr, other))
			continue
		}
		taken[addr] = id
		if err := b.Add(Route{Prefix: addr, NextHop: id, Relation: a.Relation, Source: SourceChild}); err != nil {
			errs = append(errs, fmt.Errorf("accounts.%s: %w", id, err))
		}
	}
	return errs
}

func addDefault(b *Builder, cfg *config.Config) []error {
	id, err := DefaultRouteAccount(cfg)
	if err != nil || id == "" {
		return nonNil(err)
	}
	prefix, err := GlobalPrefix(cfg.Env)
	if err != nil {
		return []error{fmt.Errorf("env: %w", err)}
	}
	_ = b.Add(Route{Prefix: prefix, NextHop: id, Relation: cfg.Accounts[id].Relation, Source: SourceDefault})
	return nil
}

func addStatic(b *Builder, cfg *config.Config) []error {
	var errs []error
	seen := make(map[string]int) // targetPrefix → index of its first entry
	for i, r := range cfg.Routes {
		field := fmt.Sprintf("routes[%d]", i)
		if err := checkStatic(cfg, r); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
			continue
		}
		if j, dup := seen[r.TargetPrefix]; dup {
			// JS silently uses the first entry; two different peers for one prefix is a
			// mistake worth reporting, an exact repeat is harmless.
			if cfg.Routes[j].PeerID != r.PeerID {
				errs = append(errs, fmt.Errorf("%s: targetPrefix %q already goes to %q in routes[%d]; a prefix can have only one static route",
					field, r.TargetPrefix, cfg.Routes[j].PeerID, j))
			}
			continue
		}
		seen[r.TargetPrefix] = i
		_ = b.Add(Route{Prefix: r.TargetPrefix, NextHop: r.PeerID, Relation: cfg.Accounts[r.PeerID].Relation, Source: SourceConfigured})
	}
	return errs
}

func checkStatic(cfg *config.Config, r config.Route) error {
	if r.TargetPrefix == "" {
		return errors.New("targetPrefix is empty; use defaultRoute for a catch-all route")
	}
	if err := ValidatePrefix(r.TargetPrefix); err != nil {
		return fmt.Errorf("targetPrefix: %w", err)
	}
	if isPeerAddress(r.TargetPrefix) {
		return fmt.Errorf("targetPrefix %q is under peer., which is never forwarded", r.TargetPrefix)
	}
	if _, ok := cfg.Accounts[r.PeerID]; !ok {
		return fmt.Errorf("peerId %q for targetPrefix %q is not an account (accounts: %s)", r.PeerID, r.TargetPrefix, listIDs(cfg.Accounts))
	}
	return nil
}

func sortedIDs(m map[string]config.Account) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func listIDs(m map[string]config.Account) string {
	if len(m) == 0 {
		return "none"
	}
	return strings.Join(sortedIDs(m), ", ")
}

func nonNil(err error) []error {
	if err == nil {
		return nil
	}
	return []error{err}
}
