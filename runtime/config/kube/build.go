package kube

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/tlsopt"
)

// Inputs are the API objects one connector's config is built from.
type Inputs struct {
	Connector *ilpv1.Connector
	// Accounts and Routes are those whose spec.connectorRef names the Connector; others are
	// ignored, so callers may pass the whole namespace.
	Accounts []ilpv1.Account
	Routes   []ilpv1.Route
	// SettlementEngines are the namespace's engines, which Accounts name in
	// spec.settlementEngineRef.
	SettlementEngines []ilpv1.SettlementEngine
	// Secret returns one key of a Secret of the Connector's namespace. The error says what is
	// missing, with ErrSecretUnavailable wrapped in it when a later read may succeed.
	Secret func(name, key string) ([]byte, error)
	// Previous is the config running now, if any: a running Account whose Secret cannot be read
	// now, for whatever reason, keeps its running settings instead of being removed.
	Previous *config.Config
	// ListenHost is the interface the BTP and ILP-over-HTTP servers bind: "" for every
	// interface (in a pod), 127.0.0.1 in tests.
	ListenHost string
}

// Problem is one Account or Route left out of the config, or an Account kept in it with a
// problem (its previous version, or without settlement: the config holds it), with the reason.
type Problem struct {
	Kind    string // "Account" or "Route"
	Name    string
	Message string
	// Awaiting: a new Account left out only because its Secret is not granted to the pod yet
	// (ErrSecretNotGranted), or a Route whose next hop is such an Account. The operator grants
	// it as soon as it sees the Account, so the source waits a moment before reporting it.
	Awaiting bool
}

func (p Problem) String() string { return p.Kind + " " + p.Name + ": " + p.Message }

// ErrSecretUnavailable marks a Secret read that failed for a reason that may pass (the API
// server, or a Role not yet updated for a new Secret): the source retries later.
var ErrSecretUnavailable = errors.New("secret unavailable")

// ErrSecretNotGranted marks a Secret read refused because the pod's Role does not name the
// Secret yet: the operator adds it once it sees the Account that names it, a moment after the
// pods may. An error that is ErrSecretNotGranted is ErrSecretUnavailable too.
var ErrSecretNotGranted = errors.New("secret not granted to this pod yet")

// maxDropRounds bounds how often Build drops accounts that fail validation and validates again
// (dropping an account may leave a route pointing nowhere, which is dropped the next round).
const maxDropRounds = 4

// Build maps the Connector and the Accounts and Routes that reference it to a validated
// runtime config. Accounts and Routes that cannot be configured (a missing Secret, a value the
// runtime refuses) are left out and returned as Problems, so that one bad object never stops
// the others. An Account that stays in the config with a problem (its previous version kept,
// or run without settlement) has a Problem too: the caller tells the two apart by whether the
// config holds the Account. Problems and errors name the fields of the API objects, never the
// runtime's. An error means the Connector's own settings are unusable.
func Build(in Inputs) (*config.Config, []Problem, error) {
	conn := in.Connector
	if conn == nil {
		return nil, nil, errors.New("no Connector")
	}
	cfg, err := connectorConfig(conn, in.Secret)
	if err != nil {
		return nil, nil, err
	}
	var problems []Problem
	reserved := connectorPorts(conn)
	accounts := orderedAccounts(conn.Name, in.Accounts)
	byName := make(map[string]*ilpv1.Account, len(accounts))
	for _, a := range accounts {
		byName[a.Name] = a
		ac, p, ok := accountEntry(a, in, reserved)
		if p.Message != "" {
			problems = append(problems, p)
		}
		if ok {
			cfg.Accounts[a.Name] = ac
			cfg.AccountOrder = append(cfg.AccountOrder, a.Name)
		}
	}
	routes := ownRoutes(conn.Name, in.Routes)
	for round := 0; ; round++ {
		var routeNames []string
		cfg.Routes, routeNames, problems = routeConfig(cfg, routes, problems)
		verr := cfg.Validate()
		if verr == nil {
			return cfg, problems, nil
		}
		bad, badRoutes, global := splitErrors(verr, byName, routeNames)
		if len(global) > 0 || round == maxDropRounds {
			return nil, problems, fmt.Errorf("invalid Connector %s: %s", conn.Name, connectorErrors(verr, global))
		}
		for id, msg := range bad {
			problems = append(problems, Problem{Kind: kindAccount, Name: id, Message: msg})
			delete(cfg.Accounts, id)
			cfg.AccountOrder = slices.DeleteFunc(cfg.AccountOrder, func(s string) bool { return s == id })
		}
		for name, msg := range badRoutes {
			problems = append(problems, Problem{Kind: kindRoute, Name: name, Message: msg})
			routes = slices.DeleteFunc(routes, func(r ilpv1.Route) bool { return r.Name == name })
		}
	}
}

// accountEntry maps one Account: its runtime settings, its problem (Message "" for none) and
// whether the config holds it. A running Account whose credentials cannot be read now (the
// Secret or key gone, or empty: a typo in a Secret's name, a Secret deleted before its
// replacement is created, or an API server that does not answer) keeps its previous, running
// version instead of being torn down: a bad config is refused keeping the last good one. A new
// Account has no previous version and is left out.
func accountEntry(a *ilpv1.Account, in Inputs, reserved map[int32]string) (config.Account, Problem, bool) {
	problem := func(msg string) Problem { return Problem{Kind: kindAccount, Name: a.Name, Message: msg} }
	ac, err := accountConfig(a, in.Secret, in.ListenHost)
	if err == nil {
		err = reservedPort(a, reserved)
	}
	if err != nil {
		prev, ok := previousAccount(in.Previous, a.Name)
		if !ok || !isSecretRefError(err) {
			p := problem(err.Error())
			p.Awaiting = !ok && errors.Is(err, ErrSecretNotGranted)
			return config.Account{}, p, false
		}
		return prev, problem(err.Error() + "; the connector keeps running this account's previous version"), true
	}
	se, msg := settlementEngine(a, in.SettlementEngines)
	ac.SettlementEngine = se
	return ac, problem(msg), true
}

// connectorPorts are the ports the Connector's own listeners hold, by port, whatever the
// Accounts do (Connector.ListenerPorts).
func connectorPorts(conn *ilpv1.Connector) map[int32]string {
	ports := map[int32]string{}
	for _, p := range conn.ListenerPorts() {
		ports[p.Port] = p.Name
	}
	return ports
}

// reservedPort refuses an Account whose link would listen on one of the Connector's ports:
// one of the two could not bind, and the Connector's listener is not the one to lose.
func reservedPort(a *ilpv1.Account, reserved map[int32]string) error {
	_, port, _ := a.Spec.Link.ListenPort()
	if name, ok := reserved[port]; ok && port != 0 {
		return fmt.Errorf("link port %d is the Connector's listeners.%s port: give the Account another port", port, name)
	}
	return nil
}

// settlementEngine is the engine an Account names, or nil, with the problem that leaves it
// without one. An Account whose engine does not exist (yet) runs without settlement: the
// operator reports SettlementEngineNotFound on it, and the engine's creation is a change this
// source applies. An Account whose engine settles another asset runs without settlement too,
// and the problem says so: that engine would pay the Account's amounts in its own asset (USD
// units paid as EUR), while the balance is raised as if they were paid. The test is the
// operator's (SettlementEngine.AssetMismatch), so the pods and the Account's status agree.
func settlementEngine(a *ilpv1.Account, engines []ilpv1.SettlementEngine) (*config.SettlementEngine, string) {
	if a.Spec.SettlementEngineRef == "" {
		return nil, ""
	}
	for i := range engines {
		e := &engines[i]
		if e.Name != a.Spec.SettlementEngineRef {
			continue
		}
		if why := e.AssetMismatch(a.Spec.AssetCode); why != "" {
			return nil, "settlementEngineRef: " + why + "; the account runs without settlement"
		}
		se := &config.SettlementEngine{URL: e.InClusterURL()}
		if a.Spec.SettleEvery != nil {
			se.SettleEvery = a.Spec.SettleEvery.Duration
		}
		return se, ""
	}
	return nil, ""
}

func previousAccount(prev *config.Config, id string) (config.Account, bool) {
	if prev == nil {
		return config.Account{}, false
	}
	a, ok := prev.Accounts[id]
	return a, ok
}

// splitErrors sorts validation errors into those of one Account and those of one Route (each
// joined per object, in the objects' field names) and the others, which are the Connector's.
// routeNames are the names of the Routes of the config, in its order.
func splitErrors(err error, accounts map[string]*ilpv1.Account, routeNames []string) (bad, badRoutes map[string]string, global []*config.FieldError) {
	bad, badRoutes = map[string]string{}, map[string]string{}
	fes := config.FieldErrors(err)
	if len(fes) == 0 {
		return nil, nil, []*config.FieldError{{Problem: err.Error()}}
	}
	for _, fe := range fes {
		if fe.Account != "" {
			addMessage(bad, fe.Account, fieldMessage(accountField(accounts[fe.Account], fe), fe.Value, accountTexts.Replace(fe.Problem)))
			continue
		}
		if name, field, ok := routeOf(fe.Field, routeNames); ok {
			addMessage(badRoutes, name, fieldMessage(field, fe.Value, routeRefs(connectorTexts.Replace(fe.Problem), routeNames)))
			continue
		}
		global = append(global, fe)
	}
	return bad, badRoutes, global
}

func addMessage(m map[string]string, name, msg string) {
	if m[name] != "" {
		msg = m[name] + "; " + msg
	}
	m[name] = msg
}

func fieldMessage(field, value, problem string) string {
	if value != "" {
		field += " = " + value
	}
	return field + ": " + problem
}

// routeOf finds the Route of a config error about routes[i]: its name and the Route's field.
func routeOf(field string, routeNames []string) (name, routeField string, ok bool) {
	rest, found := strings.CutPrefix(field, "routes[")
	if !found {
		return "", "", false
	}
	idx, rest, found := strings.Cut(rest, "]")
	i, err := strconv.Atoi(idx)
	if !found || err != nil || i < 0 || i >= len(routeNames) {
		return "", "", false
	}
	routeField = strings.TrimPrefix(rest, ".")
	if routeField == "peerId" {
		routeField = "nextHop"
	}
	return routeNames[i], routeField, true
}

// routeRef is another Route named in a problem by its place in the config ("routes[2]").
var routeRef = regexp.MustCompile(`routes\[(\d+)\]`)

// routeRefs names the Routes a problem refers to by their place in the config.
func routeRefs(problem string, routeNames []string) string {
	return routeRef.ReplaceAllStringFunc(problem, func(m string) string {
		i, err := strconv.Atoi(m[len("routes[") : len(m)-1])
		if err != nil || i >= len(routeNames) {
			return m
		}
		return "Route " + routeNames[i]
	})
}

// accountFields are the Account fields of the runtime's account settings whose names differ;
// the others (balance.maximum, maxPacketAmount, rateLimit.refillCount…) are the same.
var accountFields = map[string]string{
	"(account id)":         "metadata.name",
	"settlementEngine":     "settlementEngineRef",
	"settlementEngine.url": "settlementEngineRef",
	"plugin":               "link",
}

// accountField names the Account field a runtime error is about. Build writes the link as the
// plugin's options, which the user never wrote: an error about them names the link, and a
// port's error (the only one with a value) the link's port. a is nil for an account that is
// no Account of the Connector (none: every account of the config is one).
func accountField(a *ilpv1.Account, fe *config.FieldError) string {
	if fe.Field != "options" || a == nil {
		if f, ok := accountFields[fe.Field]; ok {
			return f
		}
		return fe.Field
	}
	l := a.Spec.Link
	port := fe.Value != ""
	switch {
	case l.BTPClient != nil:
		return "link.btpClient"
	case l.BTPListener != nil && port:
		return "link.btpListener.port"
	case l.BTPListener != nil:
		return "link.btpListener"
	case l.BTPChildServer != nil && port:
		return "link.btpChildServer.port"
	case l.BTPChildServer != nil:
		return "link.btpChildServer"
	case l.HTTP != nil && port:
		return "link.http.incoming.port"
	}
	return "link.http"
}

// accountTexts rewrites the runtime's names inside an Account's problem (the JS options of
// ilp-plugin-http, the Connector's settings as config keys) as the API objects name them.
var accountTexts = strings.NewReplacer(
	"ilp-plugin-http options: ", "",
	"outgoing.callbackUrl", "outgoing.callbackURL",
	"staticToken or jwtSecret", "tokenSecretRef or jwtSecretRef",
	"staticToken", "tokenSecretRef",
	"the rates of backendConfig", "the Connector's rates.rates",
	"adminApiPort", "the Connector's admin API port (listeners.admin.port)",
	"settlementApiPort", "the Connector's settlement API port (listeners.settlement.port)",
)

// connectorFields are the Connector fields of the runtime's global settings whose names differ.
var connectorFields = map[string]string{
	"env":                    "network",
	"ilpAddressInheritFrom":  "inheritAddressFrom",
	"defaultRoute":           "routing.defaultRoute",
	"routeBroadcastInterval": "routing.broadcastInterval",
	"routeCleanupInterval":   "routing.cleanupInterval",
	"routeExpiry":            "routing.expiry",
	"routingSecret":          "routing.routingSecretRef",
	"spread":                 "rates.spread",
	"backend":                "rates.backend",
	"backendConfig":          "rates",
	"adminApiPort":           "listeners.admin.port",
	"settlementApiPort":      "listeners.settlement.port",
	"store":                  "store.type",
	"storePath":              "store",
	"storeConfig":            "store.redis",
}

// connectorTexts rewrites the config keys a global problem refers to (see config.keyRef) as
// the Connector's fields. Only whole phrases: "env" alone is too common a word to replace.
var connectorTexts = strings.NewReplacer(
	"env is ", "the Connector's network is ",
	"set env to match", "set the Connector's network to match",
	"set ilpAddressInheritFrom to", "set inheritAddressFrom to",
	"rates in backendConfig", "rates in rates.rates",
)

// connectorErrors writes the Connector's errors in its field names; with none (Build gave up
// dropping objects after maxDropRounds) the validation error as it is.
func connectorErrors(verr error, global []*config.FieldError) string {
	if len(global) == 0 {
		return verr.Error()
	}
	msgs := make([]string, len(global))
	for i, fe := range global {
		if fe.Field == "" {
			msgs[i] = fe.Problem
			continue
		}
		field := fe.Field
		if f, ok := connectorFields[field]; ok {
			field = f
		}
		msgs[i] = fieldMessage(field, fe.Value, connectorTexts.Replace(fe.Problem))
	}
	return strings.Join(msgs, "; ")
}

// connectorConfig maps the Connector's own spec: identity, rates, routing, windows, middlewares
// and store.
func connectorConfig(conn *ilpv1.Connector, secret func(name, key string) ([]byte, error)) (*config.Config, error) {
	s := conn.Spec
	cfg := config.Defaults()
	if s.Network != "" {
		cfg.Env = s.Network
	}
	cfg.ILPAddress, cfg.ILPAddressInheritFrom = s.ILPAddress, s.InheritAddressFrom
	if err := ratesConfig(cfg, s.Rates); err != nil {
		return nil, err
	}
	if err := routingConfig(cfg, s.Routing, secret); err != nil {
		return nil, err
	}
	setDuration(&cfg.MaxHoldTime, s.MaxHoldTime)
	setDuration(&cfg.MinMessageWindow, s.MinMessageWindow)
	for _, m := range s.DisableMiddleware {
		cfg.DisableMiddleware = append(cfg.DisableMiddleware, string(m))
	}
	if err := storeConfig(cfg, s.Store, secret); err != nil {
		return nil, err
	}
	// The admin API is always on in a pod: the probes and /metrics use it.
	cfg.AdminAPI, cfg.AdminAPIHost = true, "0.0.0.0"
	if l := s.Listeners; l != nil && l.Admin != nil {
		cfg.AdminAPIPort = int(l.Admin.Port)
	}
	// The engines reach the settlement API through the <name>-admin Service, on every
	// interface of the pod; without listeners.settlement it stays on the pod's loopback.
	if l := s.Listeners; l != nil && l.Settlement != nil {
		cfg.SettlementAPIHost, cfg.SettlementAPIPort = "0.0.0.0", int(l.Settlement.Port)
	}
	return cfg, nil
}

func setDuration(dst *time.Duration, d *metav1.Duration) {
	if d != nil {
		*dst = d.Duration
	}
}

// ratesConfig maps spec.rates. The CRD gives each asset's value in a common unit (USD "1",
// EUR "1.08": one EUR is worth 1.08 USD); the static backend takes the ECB shape, units of the
// asset per unit of the base, which is the inverse. 34 decimal places keep the inverse far
// below the 15 significant digits the rates are rounded to.
func ratesConfig(cfg *config.Config, r *ilpv1.RatesSpec) error {
	if r == nil {
		return nil
	}
	if r.Backend != "" {
		cfg.Backend = r.Backend
	}
	if r.Spread != "" {
		d, err := decimal.NewFromString(r.Spread)
		if err != nil {
			return fmt.Errorf("rates.spread %q is not a decimal", r.Spread)
		}
		cfg.Spread = d
	}
	if r.ECB != nil {
		cfg.BackendConfig = ecbConfig(r.ECB)
	}
	if len(r.Rates) == 0 {
		return nil
	}
	prices := make(map[string]string, len(r.Rates))
	for code, v := range r.Rates {
		d, err := decimal.NewFromString(string(v))
		if err != nil || !d.IsPositive() {
			return fmt.Errorf("rates.rates[%s] = %q: want a positive decimal", code, v)
		}
		prices[code] = decimal.NewFromInt(1).DivRound(d, 34).String()
	}
	b, _ := json.Marshal(map[string]any{"rates": prices})
	cfg.BackendConfig = b
	return nil
}

// ecbConfig is the ecb backend's backendConfig: the JS names, durations in milliseconds.
func ecbConfig(e *ilpv1.ECBRatesSpec) json.RawMessage {
	c := map[string]any{}
	if e.URL != "" {
		c["url"] = e.URL
	}
	if e.RefreshInterval != nil {
		c["refreshInterval"] = e.RefreshInterval.Milliseconds()
	}
	if e.MaxAge != nil {
		c["maxAge"] = e.MaxAge.Milliseconds()
	}
	b, _ := json.Marshal(c)
	return b
}

func routingConfig(cfg *config.Config, r *ilpv1.RoutingSpec, secret func(name, key string) ([]byte, error)) error {
	if r == nil {
		return nil
	}
	if r.Broadcast != nil {
		cfg.RouteBroadcastEnabled = *r.Broadcast
	}
	setDuration(&cfg.RouteBroadcastInterval, r.BroadcastInterval)
	setDuration(&cfg.RouteCleanupInterval, r.CleanupInterval)
	setDuration(&cfg.RouteExpiry, r.Expiry)
	if r.DefaultRoute != "" {
		cfg.DefaultRoute = r.DefaultRoute
	}
	if r.ReflectPayments != nil {
		cfg.ReflectPayments = *r.ReflectPayments
	}
	if ref := r.RoutingSecretRef; ref != nil {
		v, err := secret(ref.Name, ref.Key)
		if err != nil {
			return fmt.Errorf("routing.routingSecretRef: %w", err)
		}
		cfg.RoutingSecret = v
	}
	return nil
}

func storeConfig(cfg *config.Config, s *ilpv1.StoreSpec, secret func(name, key string) ([]byte, error)) error {
	if s == nil {
		return nil
	}
	switch s.Type {
	case ilpv1.StoreFile:
		cfg.Store, cfg.StorePath = config.StoreFile, ilpv1.FileStoreMountPath
	case ilpv1.StoreRedis:
		if s.Redis == nil {
			return errors.New("store.redis is required with store.type redis")
		}
		u, err := secret(s.Redis.URLSecretRef.Name, s.Redis.URLSecretRef.Key)
		if err != nil {
			return fmt.Errorf("store.redis.urlSecretRef: %w", err)
		}
		o := map[string]string{"url": strings.TrimSpace(string(u))}
		if s.Redis.KeyPrefix != "" {
			o["prefix"] = s.Redis.KeyPrefix
		}
		b, _ := json.Marshal(o)
		cfg.Store, cfg.StoreConfig = config.StoreRedis, b
	}
	return nil
}

// orderedAccounts returns the Accounts of the connector, oldest first (ties by name): the
// JS "first parent" is the first in this order, and creation order is what a user sees.
// Pointers, not copies: an Account is a large struct and there may be 10,000 of them.
func orderedAccounts(connector string, all []ilpv1.Account) []*ilpv1.Account {
	out := make([]*ilpv1.Account, 0, len(all))
	for i := range all {
		if a := &all[i]; a.Spec.ConnectorRef == connector && a.DeletionTimestamp.IsZero() {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, func(a, b *ilpv1.Account) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

func ownRoutes(connector string, all []ilpv1.Route) []ilpv1.Route {
	var out []ilpv1.Route
	for _, r := range all {
		if r.Spec.ConnectorRef == connector && r.DeletionTimestamp.IsZero() {
			out = append(out, r)
		}
	}
	// Of two Routes with one prefix the older wins, so that a new Route cannot take over
	// traffic that already flows.
	slices.SortFunc(out, func(a, b ilpv1.Route) int {
		if c := strings.Compare(a.Spec.TargetPrefix, b.Spec.TargetPrefix); c != 0 {
			return c
		}
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

// routeConfig maps the Routes, sorted by prefix so that an unchanged set compares equal, and
// returns their names in the same order. A Route whose next hop is not a configured account,
// or whose prefix another Route already has, is left out with a problem (reported once:
// problems already listed are kept).
func routeConfig(cfg *config.Config, routes []ilpv1.Route, problems []Problem) ([]config.Route, []string, []Problem) {
	out := []config.Route{}
	var names []string // of the Routes in out, in its order
	seen := map[string]string{}
	known, awaiting := map[string]bool{}, map[string]bool{}
	for _, p := range problems {
		switch p.Kind {
		case kindRoute:
			known[p.Name] = true
		case kindAccount:
			awaiting[p.Name] = awaiting[p.Name] || p.Awaiting
		}
	}
	add := func(name, msg string, wait bool) {
		if !known[name] {
			problems = append(problems, Problem{Kind: kindRoute, Name: name, Message: msg, Awaiting: wait})
			known[name] = true
		}
	}
	for _, r := range routes {
		if _, ok := cfg.Accounts[r.Spec.NextHop]; !ok {
			add(r.Name, fmt.Sprintf("next hop %q is not a configured account of this connector", r.Spec.NextHop), awaiting[r.Spec.NextHop])
			continue
		}
		if other, dup := seen[r.Spec.TargetPrefix]; dup {
			add(r.Name, fmt.Sprintf("Route %s already has prefix %q", other, r.Spec.TargetPrefix), false)
			continue
		}
		seen[r.Spec.TargetPrefix] = r.Name
		out = append(out, config.Route{TargetPrefix: r.Spec.TargetPrefix, PeerID: r.Spec.NextHop})
		names = append(names, r.Name)
	}
	return out, names, problems
}

// accountConfig maps one Account to the JS account object the runtime takes.
func accountConfig(a *ilpv1.Account, secret func(name, key string) ([]byte, error), host string) (config.Account, error) {
	s := a.Spec
	if s.AssetScale < 0 || s.AssetScale > 255 {
		return config.Account{}, fmt.Errorf("assetScale %d: want 0 to 255", s.AssetScale)
	}
	ac := config.Account{
		Relation: config.Relation(s.Relation), AssetCode: s.AssetCode, AssetScale: uint8(s.AssetScale),
		SendRoutes: s.SendRoutes, ReceiveRoutes: s.ReceiveRoutes, ILPAddressSegment: s.ILPAddressSegment,
	}
	var err error
	if ac.Plugin, ac.Options, err = linkOptions(s.Link, secret, host); err != nil {
		return config.Account{}, err
	}
	if ac.Balance, err = balanceConfig(s.Balance); err != nil {
		return config.Account{}, err
	}
	if s.MaxPacketAmount != nil {
		v, err := amount("maxPacketAmount", string(*s.MaxPacketAmount))
		if err != nil {
			return config.Account{}, err
		}
		ac.MaxPacketAmount = &v
	}
	ac.RateLimit = rateLimitConfig(s.RateLimit)
	if ac.Throughput, err = throughputConfig(s.Throughput); err != nil {
		return config.Account{}, err
	}
	ac.Deduplicate = deduplicateConfig(s.Deduplicate)
	return ac, nil
}

// linkOptions renders the link as the JS plugin name and options, with the credentials read
// from the Secrets: a client's token goes into the server URL as ilp-plugin-btp expects it.
func linkOptions(l ilpv1.AccountLink, secret func(name, key string) ([]byte, error), host string) (string, json.RawMessage, error) {
	var opts map[string]any
	plugin := config.PluginBTP
	switch {
	case l.BTPClient != nil:
		token, err := secretText(secret, l.BTPClient.TokenSecretRef, "link.btpClient.tokenSecretRef")
		if err != nil {
			return "", nil, err
		}
		server, err := serverURL(l.BTPClient.URL, l.BTPClient.Username, token)
		if err != nil {
			return "", nil, err
		}
		opts = map[string]any{"server": server}
		if t, err := tlsOptions(secret, l.BTPClient.TLS, "link.btpClient.tls"); err != nil {
			return "", nil, err
		} else if t != nil {
			opts["tls"] = t
		}
	case l.BTPListener != nil:
		sec, err := secretText(secret, l.BTPListener.SecretRef, "link.btpListener.secretRef")
		if err != nil {
			return "", nil, err
		}
		lis := map[string]any{"port": l.BTPListener.Port, "secret": sec}
		if host != "" {
			lis["host"] = host
		}
		if err := putServerTLS(lis, secret, l.BTPListener.TLS, "link.btpListener.tls"); err != nil {
			return "", nil, err
		}
		opts = map[string]any{"listener": lis}
	case l.BTPChildServer != nil:
		plugin = config.PluginMiniAccounts
		ws := map[string]any{"port": l.BTPChildServer.Port}
		if host != "" {
			ws["host"] = host
		}
		opts = map[string]any{"wsOpts": ws}
		if err := putServerTLS(opts, secret, l.BTPChildServer.TLS, "link.btpChildServer.tls"); err != nil {
			return "", nil, err
		}
	case l.HTTP != nil:
		plugin = config.PluginHTTP
		var err error
		if opts, err = httpOptions(l.HTTP, secret, host); err != nil {
			return "", nil, err
		}
	default:
		return "", nil, errors.New("link: set exactly one of btpClient, btpListener, btpChildServer, http")
	}
	b, err := json.Marshal(opts)
	return plugin, b, err
}

// httpOptions renders an ILP-over-HTTP link as ilp-plugin-http's options; the runtime's
// ilphttp.ParseOptions checks them (a mode or URL admission let through is refused there,
// and the Account left out with its message).
func httpOptions(h *ilpv1.HTTPLink, secret func(name, key string) ([]byte, error), host string) (map[string]any, error) {
	opts := map[string]any{}
	if h.Mode != "" {
		opts["mode"] = string(h.Mode)
	}
	if in := h.Incoming; in != nil {
		o, err := httpAuth(secret, "link.http.incoming", in.TokenSecretRef, in.JWTSecretRef)
		if err != nil {
			return nil, err
		}
		o["port"] = in.Port
		if host != "" {
			o["host"] = host
		}
		if err := putServerTLS(o, secret, in.TLS, "link.http.incoming.tls"); err != nil {
			return nil, err
		}
		opts["incoming"] = o
	}
	if out := h.Outgoing; out != nil {
		o, err := httpAuth(secret, "link.http.outgoing", out.TokenSecretRef, out.JWTSecretRef)
		if err != nil {
			return nil, err
		}
		o["url"] = out.URL
		if out.CallbackURL != "" {
			o["callbackUrl"] = out.CallbackURL
		}
		t, err := tlsOptions(secret, out.TLS, "link.http.outgoing.tls")
		if err != nil {
			return nil, err
		}
		if t != nil {
			o["tls"] = t
		}
		opts["outgoing"] = o
	}
	return opts, nil
}

// httpAuth reads one direction's credentials into staticToken and jwtSecret.
func httpAuth(secret func(name, key string) ([]byte, error), field string, token, jwt *ilpv1.SecretKeyRef) (map[string]any, error) {
	o := map[string]any{}
	for _, c := range []struct {
		ref       *ilpv1.SecretKeyRef
		key, name string
	}{{token, "staticToken", ".tokenSecretRef"}, {jwt, "jwtSecret", ".jwtSecretRef"}} {
		if c.ref == nil {
			continue
		}
		v, err := secretText(secret, *c.ref, field+c.name)
		if err != nil {
			return nil, err
		}
		o[c.key] = v
	}
	return o, nil
}

// tlsOptions renders a link's tls as the runtime's tls option (runtime/tlsopt): the PEM text
// of the authorities and of the client certificate and its key, read from the Secrets, and
// the server name. A renewed certificate changes the options, which makes the runtime
// reconnect the link with it. The PEM is checked by the runtime's own parsing (tlsopt.ParseCAs,
// tlsopt.ParseKeyPair), so what passes here the pods take. What cannot be used (a key missing
// or empty, a CA bundle with no certificate or one that does not parse, a certificate chain
// that does not parse or holds the key, a certificate and key that are no pair) is a
// secretRefError naming the field, the Secret and its key: a running Account keeps its
// previous version rather than losing its link to a bad renewal. nil t: nil.
func tlsOptions(secret func(name, key string) ([]byte, error), t *ilpv1.ClientTLS, field string) (map[string]any, error) {
	if t == nil {
		return nil, nil
	}
	o := map[string]any{}
	if r := t.CASecretRef; r != nil {
		ca, err := caPEM(secret, *r, field+".caSecretRef")
		if err != nil {
			return nil, err
		}
		o["ca"] = ca
	}
	if c := t.CertificateSecretRef; c != nil {
		cert, key, err := certificatePEM(secret, *c, field+".certificateSecretRef")
		if err != nil {
			return nil, err
		}
		o["cert"], o["key"] = cert, key
	}
	if t.ServerName != "" {
		o["servername"] = t.ServerName
	}
	return o, nil
}

// putServerTLS renders a listening link's tls into opts["tls"] as the runtime's server tls
// option (ilp-plugin-btp's listener.tls, ilp-plugin-mini-accounts' tls, ilp-plugin-http's
// incoming.tls): the PEM text of the certificate Secret's tls.crt and tls.key, and of
// clientCASecretRef's key as clientCa. The runtime puts a new certificate or key in force in
// place (open connections stay, new handshakes see it) and reconnects the link for a new
// client CA, which must hold for the connected peers too. The PEM is checked as
// tlsOptions checks it, and what cannot be used is a secretRefError: a running Account keeps
// its previous version through a bad renewal. nil t: opts unchanged.
func putServerTLS(opts map[string]any, secret func(name, key string) ([]byte, error), t *ilpv1.ServerTLS, field string) error {
	if t == nil {
		return nil
	}
	cert, key, err := certificatePEM(secret, t.CertificateSecretRef, field+".certificateSecretRef")
	if err != nil {
		return err
	}
	o := map[string]any{"cert": cert, "key": key}
	if r := t.ClientCASecretRef; r != nil {
		ca, err := caPEM(secret, *r, field+".clientCASecretRef")
		if err != nil {
			return err
		}
		o["clientCa"] = ca
	}
	if len(t.ClientNames) > 0 {
		// Admission keeps them to a list of 1 to 64 non-empty names with clientCASecretRef;
		// the runtime's check refuses the rest (a name padded with spaces, which no
		// certificate carries) here, naming the field.
		if err := tlsopt.CheckClientNames(field, t.ClientNames, t.ClientCASecretRef != nil); err != nil {
			return err
		}
		o["clientNames"] = t.ClientNames
	}
	opts["tls"] = o
	return nil
}

// caPEM reads the PEM certificates of authorities from a Secret's key, checked by the
// runtime's parsing (tlsopt.ParseCAs). Its errors are secretRefErrors naming field.
func caPEM(secret func(name, key string) ([]byte, error), r ilpv1.SecretKeyRef, field string) (string, error) {
	ca, err := secretPEM(secret, r, field)
	if err != nil {
		return "", err
	}
	if _, err := tlsopt.ParseCAs(ca); err != nil {
		return "", secretRefError{fmt.Errorf("%s: key %q of Secret %q %w", field, r.Key, r.Name, err)}
	}
	return string(ca), nil
}

// certificatePEM reads the certificate chain and private key of a kubernetes.io/tls Secret
// (tls.crt, tls.key), checked as a pair by the runtime's parsing (tlsopt.ParseKeyPair). Its
// errors are secretRefErrors naming field.
func certificatePEM(secret func(name, key string) ([]byte, error), c ilpv1.TLSSecretRef, field string) (cert, key string, err error) {
	certPEM, err := secretPEM(secret, ilpv1.SecretKeyRef{Name: c.Name, Key: corev1.TLSCertKey}, field)
	if err != nil {
		return "", "", err
	}
	keyPEM, err := secretPEM(secret, ilpv1.SecretKeyRef{Name: c.Name, Key: corev1.TLSPrivateKeyKey}, field)
	if err != nil {
		return "", "", err
	}
	name := func(k string) string { return fmt.Sprintf("key %q of Secret %q", k, c.Name) }
	if _, err := tlsopt.ParseKeyPair(certPEM, keyPEM, name(corev1.TLSCertKey), name(corev1.TLSPrivateKeyKey)); err != nil {
		return "", "", secretRefError{fmt.Errorf("%s: %w", field, err)}
	}
	return string(certPEM), string(keyPEM), nil
}

// secretPEM reads PEM text from a Secret, as it is. Its errors are secretRefErrors.
func secretPEM(secret func(name, key string) ([]byte, error), ref ilpv1.SecretKeyRef, field string) ([]byte, error) {
	v, err := secret(ref.Name, ref.Key)
	if err != nil {
		return nil, secretRefError{fmt.Errorf("%s: %w", field, err)}
	}
	if len(bytes.TrimSpace(v)) == 0 {
		return nil, secretRefError{fmt.Errorf("%s: key %q of Secret %q is empty", field, ref.Key, ref.Name)}
	}
	return v, nil
}

// secretText reads a credential. Trailing line breaks are dropped: `kubectl create secret
// --from-file` keeps the file's final newline, which no peer means as part of a token. Its
// errors are secretRefErrors.
func secretText(secret func(name, key string) ([]byte, error), ref ilpv1.SecretKeyRef, field string) (string, error) {
	v, err := secret(ref.Name, ref.Key)
	if err != nil {
		return "", secretRefError{fmt.Errorf("%s: %w", field, err)}
	}
	t := strings.TrimRight(string(v), "\r\n")
	if t == "" {
		return "", secretRefError{fmt.Errorf("%s: key %q of Secret %q is empty", field, ref.Key, ref.Name)}
	}
	return t, nil
}

// secretRefError is an Account's credential that cannot be read from its Secret: a running
// Account keeps its previous version (accountEntry). The message is the wrapped error's.
type secretRefError struct{ err error }

func (e secretRefError) Error() string { return e.err.Error() }
func (e secretRefError) Unwrap() error { return e.err }

func isSecretRefError(err error) bool {
	var se secretRefError
	return errors.As(err, &se)
}

// serverURL puts user:token into a btp+ws(s) URL. ilp-plugin-btp sends the userinfo exactly as
// written, so characters that would end the userinfo cannot be escaped without changing the
// token the peer sees: such tokens are refused with a message instead.
func serverURL(raw, user, token string) (string, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok || (scheme != "btp+ws" && scheme != "btp+wss") {
		return "", fmt.Errorf("link.btpClient.url %q: want btp+ws://host:port/path or btp+wss://…", raw)
	}
	if strings.ContainsAny(user, ":@/?#") || strings.ContainsAny(token, "@/?#") {
		return "", errors.New("link.btpClient: the username or token contains one of : @ / ? # (the username may not contain ':'); BTP puts them in the server URL unescaped, so choose a token without them")
	}
	return scheme + "://" + user + ":" + token + "@" + rest, nil
}

func balanceConfig(b *ilpv1.BalanceSpec) (*config.Balance, error) {
	if b == nil {
		return nil, nil
	}
	out := &config.Balance{}
	for _, f := range []struct {
		name string
		in   *ilpv1.IntegerString
		out  **int64
	}{{"balance.minimum", b.Minimum, &out.Minimum}, {"balance.maximum", b.Maximum, &out.Maximum}, {"balance.settleThreshold", b.SettleThreshold, &out.SettleThreshold}} {
		if f.in == nil {
			continue
		}
		v, err := integer(f.name, string(*f.in))
		if err != nil {
			return nil, err
		}
		*f.out = &v
	}
	if b.SettleTo != nil {
		v, err := integer("balance.settleTo", string(*b.SettleTo))
		if err != nil {
			return nil, err
		}
		out.SettleTo = v
	}
	return out, nil
}

func integer(field, s string) (int64, error) {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s %q: want an integer within ±%d", field, s, int64(math.MaxInt64))
	}
	return v, nil
}

func amount(field, s string) (uint64, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s %q: want an integer from 0 to %d", field, s, uint64(math.MaxUint64))
	}
	return v, nil
}

// rateLimitConfig fills unset fields with the JS middleware's defaults; nil stays nil, which
// the runtime reads as the default bucket too.
func rateLimitConfig(r *ilpv1.RateLimitSpec) *config.RateLimit {
	if r == nil {
		return nil
	}
	out := config.DefaultRateLimit()
	setDuration(&out.RefillPeriod, r.RefillPeriod)
	if r.RefillCount != nil && *r.RefillCount > 0 {
		out.RefillCount = uint64(*r.RefillCount)
	}
	out.Capacity = out.RefillCount
	if r.Capacity != nil && *r.Capacity > 0 {
		out.Capacity = uint64(*r.Capacity)
	}
	return &out
}

func throughputConfig(t *ilpv1.ThroughputSpec) (*config.Throughput, error) {
	if t == nil {
		return nil, nil
	}
	out := &config.Throughput{RefillPeriod: config.DefaultThroughputRefillPeriod}
	setDuration(&out.RefillPeriod, t.RefillPeriod)
	for _, f := range []struct {
		name string
		in   *ilpv1.AmountString
		out  **uint64
	}{{"throughput.incomingAmount", t.IncomingAmount, &out.IncomingAmount}, {"throughput.outgoingAmount", t.OutgoingAmount, &out.OutgoingAmount}} {
		if f.in == nil {
			continue
		}
		v, err := amount(f.name, string(*f.in))
		if err != nil {
			return nil, err
		}
		*f.out = &v
	}
	return out, nil
}

func deduplicateConfig(d *ilpv1.DeduplicateSpec) *config.Deduplicate {
	if d == nil {
		return nil
	}
	out := config.DefaultDeduplicate()
	setDuration(&out.CleanupInterval, d.CleanupInterval)
	setDuration(&out.PacketLifetime, d.PacketLifetime)
	return &out
}
