package config

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/shopspring/decimal"

	"github.com/ilpfleet/ilpfleet/internal/suggest"
	"github.com/ilpfleet/ilpfleet/runtime/btp"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/ilphttp"
	"github.com/ilpfleet/ilpfleet/runtime/rates"
	"github.com/ilpfleet/ilpfleet/runtime/settlement"
)

// accountIDRe is what the JS connector accepts as an account id (its store namespaces keys by
// account id with this pattern); ids also appear in CCP routes and metrics labels.
var accountIDRe = regexp.MustCompile(`^[A-Za-z0-9_~.-]+$`)

// Validate checks the whole config and returns every problem found, joined with errors.Join
// (each one a *FieldError), or nil. It does not change c.
func (c *Config) Validate() error {
	return c.validate().join(nil)
}

func (c *Config) validate() fieldErrors {
	var l fieldErrors
	c.validateAddress(&l)
	for _, id := range sortedKeys(c.Accounts) {
		a := c.Accounts[id]
		validateAccount(id, &a, &l)
	}
	c.validateChildSegments(&l)
	c.validateRoutes(&l)
	c.validateGlobals(&l)
	c.validateListeners(&l)
	return l
}

// validateAddress checks the connector's own address, its network (RFC 34), and where it is
// inherited from.
func (c *Config) validateAddress(l *fieldErrors) {
	if c.Env != EnvTest && c.Env != EnvProduction {
		l.add("", "env", quote(c.Env), "expected %q or %q", EnvTest, EnvProduction)
	}
	if c.ILPAddress != "" {
		if err := ilp.ValidateAddress(c.ILPAddress); err != nil {
			l.add("", "ilpAddress", quote(c.ILPAddress), "%s", reason(err))
		} else if err := ilp.CheckNetwork(ilp.Address(c.ILPAddress), c.Env); err != nil && (c.Env == EnvTest || c.Env == EnvProduction) {
			l.add("", "ilpAddress", quote(c.ILPAddress), "%s; %s is %q: use an address of that network or set %[2]s to match (RFC 34)", reason(err), keyRef("env"), c.Env)
		}
	}
	if from := c.ILPAddressInheritFrom; from != "" {
		if a, ok := c.Accounts[from]; !ok {
			l.add("", "ilpAddressInheritFrom", quote(from), "no such account (accounts: %s)", idList(sortedKeys(c.Accounts)))
		} else if a.Relation != RelationParent {
			l.add("", "ilpAddressInheritFrom", quote(from), "account has relation %q; the address can only be inherited from a parent (parents: %s)", a.Relation, idList(c.Parents()))
		}
		return
	}
	if c.ILPAddress != "" {
		return
	}
	switch parents := c.Parents(); {
	case len(parents) == 0:
		l.add("", "ilpAddress", "", "required when no account has relation \"parent\" (there is no parent to inherit the address from)")
	case len(parents) > 1 && !c.ordered(parents):
		l.add("", "ilpAddressInheritFrom", "", "several parents (%s) and no order to pick the first: set %s to one of them", idList(parents), keyRef("ilpAddressInheritFrom"))
	}
}

func validateAccount(id string, a *Account, l *fieldErrors) {
	if !accountIDRe.MatchString(id) {
		l.add(id, "(account id)", "", "expected letters, digits and _ ~ - . only")
	}
	switch a.Relation {
	case RelationParent, RelationPeer, RelationChild:
	default:
		l.add(id, "relation", quote(string(a.Relation)), "expected \"parent\", \"peer\" or \"child\"")
	}
	if !contains(SupportedPlugins, a.Plugin) {
		l.add(id, "plugin", quote(a.Plugin), "not supported by the Go connector; supported plugins: %s", strings.Join(SupportedPlugins, ", "))
	}
	if a.AssetCode == "" {
		l.add(id, "assetCode", "", "required (e.g. \"USD\" or \"XRP\")")
	}
	if seg := a.ILPAddressSegment; seg != "" && ilp.ValidateAddress("local."+seg) != nil {
		l.add(id, "ilpAddressSegment", quote(seg), "expected an address segment: letters, digits and _ ~ - (dots between segments)")
	}
	if len(a.Options) > 0 && !isJSONObject(a.Options) {
		l.add(id, "options", "", "expected a JSON object; got %s", jsonKind(a.Options))
	} else if a.Plugin == PluginHTTP {
		// The value is not quoted back: the options hold tokens.
		if _, err := ilphttp.ParseOptions(a.Options); err != nil {
			l.add(id, "options", "", "%s", strings.TrimPrefix(err.Error(), "ilphttp: "))
		}
	} else if err := btp.CheckTLS(a.Plugin, a.Options); err != nil {
		// Only the TLS of the BTP options — the dialing tls, listener.tls, mini-accounts' tls
		// (the others when the link is built, step 3): a bad tls is this account's problem,
		// which a source can leave out (or keep running its previous version), rather than a
		// config the connector refuses whole.
		l.add(id, "options", "", "%s", strings.TrimPrefix(err.Error(), "btp: "))
	}
	validateBalance(id, a.Balance, l)
	validateLimits(id, a, l)
	if se := a.SettlementEngine; se != nil {
		if p := settlement.EngineURLProblem(se.URL); p != "" {
			l.add(id, "settlementEngine.url", quote(settlement.RedactURL(se.URL)), "%s", p)
		}
	}
}

func validateBalance(id string, b *Balance, l *fieldErrors) {
	if b == nil {
		return
	}
	lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
	if b.Minimum != nil {
		lo = *b.Minimum
	}
	if b.Maximum != nil {
		hi = *b.Maximum
	}
	if lo > hi {
		l.add(id, "balance.minimum", strconv.FormatInt(lo, 10), "greater than balance.maximum (%d)", hi)
		return
	}
	if b.SettleTo < lo || b.SettleTo > hi {
		l.add(id, "balance.settleTo", strconv.FormatInt(b.SettleTo, 10), "outside the balance bounds [%s, %s]: a settlement would push the balance past a limit", boundText(b.Minimum, "-Infinity"), boundText(b.Maximum, "Infinity"))
	}
	if t := b.SettleThreshold; t != nil && *t > b.SettleTo {
		l.add(id, "balance.settleThreshold", strconv.FormatInt(*t, 10), "greater than balance.settleTo (%d): settling would never bring the balance back above the threshold", b.SettleTo)
	}
}

func validateLimits(id string, a *Account, l *fieldErrors) {
	if a.MaxPacketAmount != nil && *a.MaxPacketAmount == 0 {
		l.add(id, "maxPacketAmount", "0", "expected a positive amount (omit it for no limit)")
	}
	if t := a.Throughput; t != nil {
		if t.RefillPeriod <= 0 {
			l.add(id, "throughput.refillPeriod", t.RefillPeriod.String(), "expected a positive period")
		}
		if t.IncomingAmount != nil && *t.IncomingAmount == 0 {
			l.add(id, "throughput.incomingAmount", "0", "expected a positive amount (omit it for no limit)")
		}
		if t.OutgoingAmount != nil && *t.OutgoingAmount == 0 {
			l.add(id, "throughput.outgoingAmount", "0", "expected a positive amount (omit it for no limit)")
		}
	}
	if r := a.RateLimit; r != nil {
		if r.RefillPeriod <= 0 {
			l.add(id, "rateLimit.refillPeriod", r.RefillPeriod.String(), "expected a positive period")
		}
		if r.RefillCount == 0 {
			l.add(id, "rateLimit.refillCount", "0", "expected a positive count")
		}
	}
	if d := a.Deduplicate; d != nil {
		if d.CleanupInterval <= 0 {
			l.add(id, "deduplicate.cleanupInterval", d.CleanupInterval.String(), "expected a positive interval")
		}
		if d.PacketLifetime <= 0 {
			l.add(id, "deduplicate.packetLifetime", d.PacketLifetime.String(), "expected a positive lifetime")
		}
	}
}

// validateChildSegments refuses two children with the same address: packets for one would
// be delivered to the other.
func (c *Config) validateChildSegments(l *fieldErrors) {
	seen := map[string]string{}
	for _, id := range sortedKeys(c.Accounts) {
		a := c.Accounts[id]
		if a.Relation != RelationChild {
			continue
		}
		seg := a.ILPAddressSegment
		if seg == "" {
			seg = id
		}
		if other, dup := seen[seg]; dup {
			l.add(id, "ilpAddressSegment", quote(seg), "same child address segment as account %q", other)
		}
		seen[seg] = id
	}
}

func (c *Config) validateRoutes(l *fieldErrors) {
	seen := map[string]int{}
	for i, r := range c.Routes {
		field := "routes[" + strconv.Itoa(i) + "]"
		if err := validatePrefix(r.TargetPrefix); err != nil {
			l.add("", field+".targetPrefix", quote(r.TargetPrefix), "%s", err)
		} else if err := ilp.CheckNetwork(ilp.Address(r.TargetPrefix), c.Env); err != nil && (c.Env == EnvTest || c.Env == EnvProduction) {
			l.add("", field+".targetPrefix", quote(r.TargetPrefix), "%s; %s is %q (RFC 34)", reason(err), keyRef("env"), c.Env)
		}
		if j, dup := seen[r.TargetPrefix]; dup {
			l.add("", field+".targetPrefix", quote(r.TargetPrefix), "same prefix as %s[%d]", keyRef("routes"), j)
		}
		seen[r.TargetPrefix] = i
		if _, ok := c.Accounts[r.PeerID]; !ok {
			l.add("", field+".peerId", quote(r.PeerID), "no such account (accounts: %s)", idList(sortedKeys(c.Accounts)))
		}
	}
	switch dr := c.DefaultRoute; {
	case dr == "":
	case dr == DefaultRouteAuto:
		if parents := c.Parents(); len(parents) > 1 && !c.ordered(parents) {
			l.add("", "defaultRoute", quote(dr), "several parents (%s) and no order to pick the first: name one of them", idList(parents))
		}
	default:
		if _, ok := c.Accounts[dr]; !ok {
			l.add("", "defaultRoute", quote(dr), "expected \"auto\", \"\" (no default route) or an account id (accounts: %s)", idList(sortedKeys(c.Accounts)))
		}
	}
}

// validatePrefix accepts an address or a bare scheme ("g", "test"): a route prefix.
func validatePrefix(p string) error {
	err := ilp.ValidateAddress(p)
	if err == nil || (p != "" && !strings.HasSuffix(p, ".") && ilp.ValidateAddress(p+".x") == nil) {
		return nil
	}
	return fmt.Errorf("expected an ILP address prefix such as \"g.acme\" or \"test\": %s", reason(err))
}

func (c *Config) validateGlobals(l *fieldErrors) {
	if c.Spread.IsNegative() || c.Spread.GreaterThanOrEqual(decimal.NewFromInt(1)) {
		l.add("", "spread", c.Spread.String(), "expected a fraction from 0 (no fee) up to but below 1; 0.002 is 0.2 %%")
	}
	for _, d := range c.millisGlobals() {
		if d.v < d.min {
			l.add("", d.key, strconv.FormatInt(d.v, 10), "%s", millisWant(d.min))
		}
	}
	c.validateBackendAndStore(l)
	for i, name := range c.DisableMiddleware {
		if !contains(middlewareNames, name) {
			l.add("", "disableMiddleware["+strconv.Itoa(i)+"]", quote(name), "unknown middleware%s; built-in middlewares: %s", suggest.DidYouMean(name, middlewareNames), strings.Join(middlewareNames, ", "))
		}
	}
	if c.AdminAPIPort < 0 || c.AdminAPIPort > 65535 {
		l.add("", "adminApiPort", strconv.Itoa(c.AdminAPIPort), "expected a TCP port from 0 to 65535")
	}
	if c.SettlementAPIPort < 0 || c.SettlementAPIPort > 65535 {
		l.add("", "settlementApiPort", strconv.Itoa(c.SettlementAPIPort), "expected a TCP port from 0 to 65535")
	}
	if c.AdminAPI && c.AdminAPIHost == "" {
		l.add("", "adminApiHost", "", "required when the admin API is enabled (default 127.0.0.1; never make it public)")
	}
}

// millisGlobal is a top-level duration and the fewest milliseconds it may have.
type millisGlobal struct {
	key    string
	v, min int64 // ms
}

// millisGlobals lists the top-level durations of c with their minimum (millisSettings).
func (c *Config) millisGlobals() []millisGlobal {
	out := make([]millisGlobal, len(millisSettings))
	for i, m := range millisSettings {
		out[i] = millisGlobal{m.key, m.field(c).Milliseconds(), m.min}
	}
	return out
}

func (c *Config) validateBackendAndStore(l *fieldErrors) {
	switch {
	case networkBackends[c.Backend]:
		l.add("", "backend", quote(c.Backend), "the JS %q backend fetches prices from public APIs other than the ECB's, which the Go connector does not call; "+
			"use %q (the ECB's daily rates, fetched and refreshed) or %q (fixed rates in %s, for any asset such as XRP)", c.Backend, BackendECB, BackendStatic, keyRef("backendConfig"))
	case !contains(SupportedBackends, c.Backend):
		l.add("", "backend", quote(c.Backend), "not supported by the Go connector; supported backends: %s", strings.Join(SupportedBackends, ", "))
	}
	if len(c.BackendConfig) > 0 && !isJSONObject(c.BackendConfig) {
		l.add("", "backendConfig", "", "expected a JSON object; got %s", jsonKind(c.BackendConfig))
	} else if contains(SupportedBackends, c.Backend) {
		// The value is not quoted back: an ecb mirror URL may hold credentials.
		if err := rates.Check(c.Backend, c.BackendConfig); err != nil {
			l.add("", "backendConfig", "", "%s", err)
		} else if c.Backend == BackendStatic {
			c.validateStaticAssets(l)
		}
	}
	if !contains(SupportedStores, c.Store) {
		l.add("", "store", quote(c.Store), "not supported by the Go connector; supported stores: %s (the JS names memdown, leveldown and ilp-store-redis mean memory, file and redis)", strings.Join(SupportedStores, ", "))
	}
	if c.Store == StoreFile && c.StorePath == "" {
		l.add("", "storePath", "", "required with store %q (a directory for the balances)", StoreFile)
	}
	if len(c.StoreConfig) > 0 && !isJSONObject(c.StoreConfig) {
		l.add("", "storeConfig", "", "expected a JSON object; got %s", jsonKind(c.StoreConfig))
	}
}

// validateStaticAssets refuses an account whose asset the static backend has no price for:
// every packet to or from it would fail to convert, while the connector looked healthy.
func (c *Config) validateStaticAssets(l *fieldErrors) {
	b, err := rates.NewStatic(c.BackendConfig)
	if err != nil {
		return // reported with backendConfig
	}
	for _, id := range c.orderedIDs() {
		code := c.Accounts[id].AssetCode
		if _, err := b.Rate(code, code); err != nil {
			l.add(id, "assetCode", quote(code), "the static backend has no price for it: add it to the rates of %s (or make it the base)", keyRef("backendConfig"))
		}
	}
}

// Parents returns the ids of the accounts with relation parent: those in AccountOrder first,
// in that order (the JS "first parent"), then any others sorted by id.
func (c *Config) Parents() []string {
	var out []string
	for _, id := range c.orderedIDs() {
		if c.Accounts[id].Relation == RelationParent {
			out = append(out, id)
		}
	}
	return out
}

// orderedIDs are the account ids: those in AccountOrder first, in that order, then any
// others sorted by id.
func (c *Config) orderedIDs() []string {
	out := make([]string, 0, len(c.Accounts))
	seen := make(map[string]bool, len(c.Accounts))
	for _, id := range c.AccountOrder {
		if _, ok := c.Accounts[id]; ok && !seen[id] {
			out, seen[id] = append(out, id), true
		}
	}
	for _, id := range sortedKeys(c.Accounts) {
		if !seen[id] {
			out = append(out, id)
		}
	}
	return out
}

// ordered reports whether every given id has a place in AccountOrder, so that "the first
// parent" is well defined.
func (c *Config) ordered(ids []string) bool {
	for _, id := range ids {
		if !contains(c.AccountOrder, id) {
			return false
		}
	}
	return true
}

// InheritFrom returns the id of the parent account the connector's address comes from (by
// IL-DCP), or "" when ILPAddress is set: ILPAddressInheritFrom, else the first parent.
func (c *Config) InheritFrom() string {
	if c.ILPAddress != "" {
		return ""
	}
	if c.ILPAddressInheritFrom != "" {
		return c.ILPAddressInheritFrom
	}
	if p := c.Parents(); len(p) > 0 {
		return p[0]
	}
	return ""
}

// DefaultRouteAccount resolves DefaultRoute: the first parent for "auto" ("" if there is
// none), "" for no default route, else the account id.
func (c *Config) DefaultRouteAccount() string {
	if c.DefaultRoute != DefaultRouteAuto {
		return c.DefaultRoute
	}
	if p := c.Parents(); len(p) > 0 {
		return p[0]
	}
	return ""
}

// reason is the part of an ilp.AddressError a config message needs.
func reason(err error) string {
	if ae, ok := err.(*ilp.AddressError); ok {
		return ae.Reason
	}
	return err.Error()
}

func boundText(v *int64, inf string) string {
	if v == nil {
		return inf
	}
	return strconv.FormatInt(*v, 10)
}

func idList(ids []string) string {
	if len(ids) == 0 {
		return "none"
	}
	return strings.Join(ids, ", ")
}
