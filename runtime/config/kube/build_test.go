package kube

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/ilphttp"
	"github.com/ilpfleet/ilpfleet/runtime/rates"
)

func testConnector() *ilpv1.Connector {
	return &ilpv1.Connector{
		ObjectMeta: metav1.ObjectMeta{Name: "alice", Namespace: "ns", Generation: 3},
		Spec:       ilpv1.ConnectorSpec{ILPAddress: "test.alice", Network: "test"},
	}
}

func account(name string, created int, mod func(*ilpv1.AccountSpec)) ilpv1.Account {
	a := ilpv1.Account{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", CreationTimestamp: metav1.NewTime(time.Unix(int64(created), 0))},
		Spec: ilpv1.AccountSpec{ConnectorRef: "alice", Relation: ilpv1.RelationChild, AssetCode: "USD", AssetScale: 9,
			Link: ilpv1.AccountLink{BTPChildServer: &ilpv1.BTPChildServerLink{Port: 7000 + int32(created)}}},
	}
	if mod != nil {
		mod(&a.Spec)
	}
	return a
}

func secrets(m map[string]map[string]string) func(name, key string) ([]byte, error) {
	return func(name, key string) ([]byte, error) {
		s, ok := m[name]
		if !ok {
			return nil, fmt.Errorf("Secret %q does not exist in namespace ns", name)
		}
		v, ok := s[key]
		if !ok {
			return nil, fmt.Errorf("Secret %q has no key %q", name, key)
		}
		return []byte(v), nil
	}
}

func options(t *testing.T, a config.Account) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(a.Options, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// httpAccount is a peer Account with an ILP-over-HTTP link.
func httpAccount(name string, created int, h *ilpv1.HTTPLink) ilpv1.Account {
	return account(name, created, func(s *ilpv1.AccountSpec) {
		s.Relation, s.Link = ilpv1.RelationPeer, ilpv1.AccountLink{HTTP: h}
	})
}

func ref(name string) *ilpv1.SecretKeyRef { return &ilpv1.SecretKeyRef{Name: name, Key: "t"} }

// httpOptionsAre checks an ILP-over-HTTP account's plugin and options, and that the runtime's
// parser takes them.
func httpOptionsAre(want string) func(t *testing.T, a config.Account) {
	return func(t *testing.T, a config.Account) {
		t.Helper()
		if a.Plugin != config.PluginHTTP || string(a.Options) != want {
			t.Errorf("plugin %s options %s, want %s %s", a.Plugin, a.Options, config.PluginHTTP, want)
		}
		if _, err := ilphttp.ParseOptions(a.Options); err != nil {
			t.Errorf("ilphttp refuses the options: %v", err)
		}
	}
}

func TestBuildAccounts(t *testing.T) {
	sec := secrets(map[string]map[string]string{"tok": {"t": "s3cret\n"}, "bad": {"t": "a@b"}, "out": {"t": "o"}, "jwt": {"t": "j\r\n"}})
	amt := func(s string) *ilpv1.AmountString { v := ilpv1.AmountString(s); return &v }
	integer := func(s string) *ilpv1.IntegerString { v := ilpv1.IntegerString(s); return &v }
	tests := []struct {
		name    string
		acct    ilpv1.Account
		problem string // substring of the account's problem; "" means it is configured
		check   func(t *testing.T, a config.Account)
	}{
		{"child server", account("kid", 1, nil), "", func(t *testing.T, a config.Account) {
			if a.Plugin != config.PluginMiniAccounts || fmt.Sprint(options(t, a)["wsOpts"]) != "map[host:127.0.0.1 port:7001]" {
				t.Errorf("plugin %s options %s", a.Plugin, a.Options)
			}
		}},
		{"btp client with token", account("up", 2, func(s *ilpv1.AccountSpec) {
			s.Relation = ilpv1.RelationParent
			s.Link = ilpv1.AccountLink{BTPClient: &ilpv1.BTPClientLink{URL: "btp+ws://bob:7768/path", Username: "alice", TokenSecretRef: ilpv1.SecretKeyRef{Name: "tok", Key: "t"}}}
		}), "", func(t *testing.T, a config.Account) {
			if got := options(t, a)["server"]; got != "btp+ws://alice:s3cret@bob:7768/path" {
				t.Errorf("server = %v", got)
			}
		}},
		{"btp listener", account("peer", 3, func(s *ilpv1.AccountSpec) {
			s.Relation = ilpv1.RelationPeer
			s.Link = ilpv1.AccountLink{BTPListener: &ilpv1.BTPListenerLink{Port: 7768, SecretRef: ilpv1.SecretKeyRef{Name: "tok", Key: "t"}}}
		}), "", func(t *testing.T, a config.Account) {
			if got := fmt.Sprint(options(t, a)["listener"]); got != "map[host:127.0.0.1 port:7768 secret:s3cret]" {
				t.Errorf("listener = %v", got)
			}
		}},
		{"limits", account("lim", 4, func(s *ilpv1.AccountSpec) {
			s.MaxPacketAmount = amt("18446744073709551615")
			s.Balance = &ilpv1.BalanceSpec{Minimum: integer("-100"), Maximum: integer("1000"), SettleThreshold: integer("-50"), SettleTo: integer("0")}
			s.RateLimit = &ilpv1.RateLimitSpec{RefillCount: ptr.To(int64(5))}
			s.Throughput = &ilpv1.ThroughputSpec{IncomingAmount: amt("77")}
			s.Deduplicate = &ilpv1.DeduplicateSpec{PacketLifetime: &metav1.Duration{Duration: 5 * time.Second}}
			s.SendRoutes = ptr.To(true)
			s.ILPAddressSegment = "seg"
		}), "", func(t *testing.T, a config.Account) {
			if *a.MaxPacketAmount != 18446744073709551615 || *a.Balance.Minimum != -100 || *a.Balance.Maximum != 1000 || *a.Balance.SettleThreshold != -50 {
				t.Errorf("amounts: %+v %+v", a.MaxPacketAmount, a.Balance)
			}
			if *a.RateLimit != (config.RateLimit{RefillPeriod: time.Minute, RefillCount: 5, Capacity: 5}) {
				t.Errorf("rateLimit %+v", *a.RateLimit)
			}
			if a.Throughput.RefillPeriod != time.Second || *a.Throughput.IncomingAmount != 77 || a.Throughput.OutgoingAmount != nil {
				t.Errorf("throughput %+v", *a.Throughput)
			}
			if *a.Deduplicate != (config.Deduplicate{CleanupInterval: 30 * time.Second, PacketLifetime: 5 * time.Second}) || !a.SendsRoutes() || a.ILPAddressSegment != "seg" {
				t.Errorf("dedupe %+v sendRoutes %v seg %q", *a.Deduplicate, a.SendsRoutes(), a.ILPAddressSegment)
			}
		}},
		{"missing secret", account("nosec", 5, func(s *ilpv1.AccountSpec) {
			s.Link = ilpv1.AccountLink{BTPClient: &ilpv1.BTPClientLink{URL: "btp+ws://bob:1", TokenSecretRef: ilpv1.SecretKeyRef{Name: "gone", Key: "t"}}}
		}), `Secret "gone" does not exist`, nil},
		{"missing key", account("nokey", 6, func(s *ilpv1.AccountSpec) {
			s.Link = ilpv1.AccountLink{BTPClient: &ilpv1.BTPClientLink{URL: "btp+ws://bob:1", TokenSecretRef: ilpv1.SecretKeyRef{Name: "tok", Key: "x"}}}
		}), `has no key "x"`, nil},
		{"token that breaks the URL", account("badtok", 7, func(s *ilpv1.AccountSpec) {
			s.Link = ilpv1.AccountLink{BTPClient: &ilpv1.BTPClientLink{URL: "btp+ws://bob:1", TokenSecretRef: ilpv1.SecretKeyRef{Name: "bad", Key: "t"}}}
		}), "choose a token without them", nil},
		{"amount out of range", account("big", 8, func(s *ilpv1.AccountSpec) { s.MaxPacketAmount = amt("99999999999999999999") }), "maxPacketAmount", nil},
		{"refused by Validate", account("zero", 9, func(s *ilpv1.AccountSpec) { s.MaxPacketAmount = amt("0") }), "maxPacketAmount = 0", nil},
		{"other connector", account("theirs", 10, func(s *ilpv1.AccountSpec) { s.ConnectorRef = "bob" }), "-", nil},
		{"http sync, both directions", httpAccount("hsync", 11, &ilpv1.HTTPLink{
			Incoming: &ilpv1.HTTPIncoming{Port: 7769, TokenSecretRef: ref("tok")},
			Outgoing: &ilpv1.HTTPOutgoing{URL: "https://bob.example/accounts/alice/ilp", TokenSecretRef: ref("out"), JWTSecretRef: ref("jwt")},
		}), "", httpOptionsAre(`{"incoming":{"host":"127.0.0.1","port":7769,"staticToken":"s3cret"},` +
			`"outgoing":{"jwtSecret":"j","staticToken":"o","url":"https://bob.example/accounts/alice/ilp"}}`)},
		{"http async", httpAccount("hasync", 12, &ilpv1.HTTPLink{Mode: ilpv1.HTTPModeAsync,
			Incoming: &ilpv1.HTTPIncoming{Port: 7770, JWTSecretRef: ref("jwt")},
			Outgoing: &ilpv1.HTTPOutgoing{URL: "http://bob:7768/ilp", TokenSecretRef: ref("out"), CallbackURL: "http://alice:7770/callback"},
		}), "", httpOptionsAre(`{"incoming":{"host":"127.0.0.1","jwtSecret":"j","port":7770},"mode":"async",` +
			`"outgoing":{"callbackUrl":"http://alice:7770/callback","staticToken":"o","url":"http://bob:7768/ilp"}}`)},
		{"http incoming only", httpAccount("hin", 13, &ilpv1.HTTPLink{Incoming: &ilpv1.HTTPIncoming{Port: 7771, TokenSecretRef: ref("tok")}}),
			"", httpOptionsAre(`{"incoming":{"host":"127.0.0.1","port":7771,"staticToken":"s3cret"}}`)},
		{"http outgoing only", httpAccount("hout", 14, &ilpv1.HTTPLink{Mode: ilpv1.HTTPModeSync,
			Outgoing: &ilpv1.HTTPOutgoing{URL: "http://bob:7768/ilp", TokenSecretRef: ref("out")}}),
			"", httpOptionsAre(`{"mode":"sync","outgoing":{"staticToken":"o","url":"http://bob:7768/ilp"}}`)},
		{"http missing secret", httpAccount("hnosec", 15, &ilpv1.HTTPLink{
			Outgoing: &ilpv1.HTTPOutgoing{URL: "http://bob:7768/ilp", TokenSecretRef: &ilpv1.SecretKeyRef{Name: "gone", Key: "t"}}}),
			`link.http.outgoing.tokenSecretRef: Secret "gone" does not exist`, nil},
		{"http incoming secret missing", httpAccount("hnoin", 16, &ilpv1.HTTPLink{Incoming: &ilpv1.HTTPIncoming{Port: 7772, JWTSecretRef: &ilpv1.SecretKeyRef{Name: "jwt", Key: "x"}}}),
			`link.http.incoming.jwtSecretRef: Secret "jwt" has no key "x"`, nil},
		// What admission would refuse, the runtime refuses too: async without a callback.
		{"http async refused by the runtime", httpAccount("hbad", 17, &ilpv1.HTTPLink{Mode: ilpv1.HTTPModeAsync,
			Incoming: &ilpv1.HTTPIncoming{Port: 7773, TokenSecretRef: ref("tok")},
			Outgoing: &ilpv1.HTTPOutgoing{URL: "http://bob:7768/ilp", TokenSecretRef: ref("out")}}), `link.http: mode "async" needs outgoing.callbackURL`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok := account("ok", 0, nil)
			cfg, problems, err := Build(Inputs{Connector: testConnector(), Accounts: []ilpv1.Account{ok, tt.acct}, Secret: sec, ListenHost: "127.0.0.1"})
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := cfg.Accounts["ok"]; !ok {
				t.Fatal("the good account was left out")
			}
			a, configured := cfg.Accounts[tt.acct.Name]
			switch {
			case tt.problem == "-":
				if configured || len(problems) > 0 {
					t.Fatalf("another connector's account: configured %v, problems %v", configured, problems)
				}
			case tt.problem == "":
				if !configured || len(problems) > 0 {
					t.Fatalf("configured %v, problems %v", configured, problems)
				}
				tt.check(t, a)
			default:
				if configured || len(problems) != 1 || problems[0].Name != tt.acct.Name || !strings.Contains(problems[0].Message, tt.problem) {
					t.Fatalf("configured %v, problems %v; want one naming %s with %q", configured, problems, tt.acct.Name, tt.problem)
				}
			}
		})
	}
}

// TestBuildSettlementEngine: an Account settles through the engine it names when the engine
// settles its asset code, whatever the two scales (RFC 38 amounts carry theirs). Through an
// engine of another asset it runs without settlement, with a problem that says why: that
// engine would pay USD amounts as EUR (the walkthrough's alice-sender on engine eur).
func TestBuildSettlementEngine(t *testing.T) {
	engines := []ilpv1.SettlementEngine{
		{ObjectMeta: metav1.ObjectMeta{Name: "usd", Namespace: "ns"}, Spec: ilpv1.SettlementEngineSpec{AssetCode: "USD", AssetScale: 9, Port: 3000}},
		{ObjectMeta: metav1.ObjectMeta{Name: "usd6", Namespace: "ns"}, Spec: ilpv1.SettlementEngineSpec{AssetCode: "USD", AssetScale: 6, Port: 3000}},
		{ObjectMeta: metav1.ObjectMeta{Name: "eur", Namespace: "ns"}, Spec: ilpv1.SettlementEngineSpec{AssetCode: "EUR", AssetScale: 9, Port: 3000}},
	}
	engineRef := func(name string) func(*ilpv1.AccountSpec) {
		return func(s *ilpv1.AccountSpec) { s.SettlementEngineRef = name }
	}
	for _, tt := range []struct {
		name    string
		acct    ilpv1.Account
		want    *config.SettlementEngine
		problem string // the account's problem; "" for none
	}{
		{"same asset", account("settled", 1, func(s *ilpv1.AccountSpec) {
			s.SettlementEngineRef, s.SettleEvery = "usd", &metav1.Duration{Duration: time.Hour}
		}), &config.SettlementEngine{URL: "http://usd-engine.ns.svc:3000", SettleEvery: time.Hour}, ""},
		{"same code, other scale", account("finer", 1, engineRef("usd6")), &config.SettlementEngine{URL: "http://usd6-engine.ns.svc:3000"}, ""},
		// Runs without settlement; the operator reports SettlementEngineNotFound.
		{"missing engine", account("missing", 1, engineRef("btc")), nil, ""},
		{"no engine", account("none", 1, nil), nil, ""},
		{"other asset", account("wrong", 1, engineRef("eur")), nil,
			`settlementEngineRef: SettlementEngine "eur" settles EUR but the account's asset is USD; the account runs without settlement`},
		{"another asset code, same scale", account("wrong9", 1, func(s *ilpv1.AccountSpec) { s.SettlementEngineRef, s.AssetCode = "eur", "GBP" }), nil,
			`SettlementEngine "eur" settles EUR but the account's asset is GBP`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, problems, err := Build(Inputs{Connector: testConnector(), Accounts: []ilpv1.Account{tt.acct}, SettlementEngines: engines, Secret: secrets(nil)})
			if err != nil {
				t.Fatal(err)
			}
			a, ok := cfg.Accounts[tt.acct.Name]
			if !ok {
				t.Fatalf("account left out: %v", problems)
			}
			if fmt.Sprint(a.SettlementEngine) != fmt.Sprint(tt.want) {
				t.Errorf("settlementEngine %v, want %v", a.SettlementEngine, tt.want)
			}
			got := fmt.Sprint(problems)
			if tt.problem == "" && len(problems) > 0 {
				t.Errorf("problems %s, want none", got)
			}
			if tt.problem != "" && (len(problems) != 1 || problems[0].Name != tt.acct.Name || !strings.Contains(got, tt.problem)) {
				t.Errorf("problems %s, want one on %s with %q", got, tt.acct.Name, tt.problem)
			}
			if cfg.SettlementAPIHost != "127.0.0.1" {
				t.Errorf("without listeners.settlement the API stays on loopback, got %s", cfg.SettlementAPIHost)
			}
		})
	}
}

func TestBuildConnector(t *testing.T) {
	conn := testConnector()
	conn.Spec.Rates = &ilpv1.RatesSpec{Backend: "static", Spread: "0.01", Rates: map[string]ilpv1.DecimalString{"USD": "1", "EUR": "1.08"}}
	conn.Spec.Routing = &ilpv1.RoutingSpec{Broadcast: ptr.To(false), Expiry: &metav1.Duration{Duration: time.Minute}, DefaultRoute: "up",
		ReflectPayments: ptr.To(false), RoutingSecretRef: &ilpv1.SecretKeyRef{Name: "r", Key: "k"}}
	conn.Spec.MaxHoldTime = &metav1.Duration{Duration: 10 * time.Second}
	conn.Spec.MinMessageWindow = &metav1.Duration{Duration: 2 * time.Second}
	conn.Spec.DisableMiddleware = []ilpv1.Middleware{"rateLimit"}
	conn.Spec.Store = &ilpv1.StoreSpec{Type: ilpv1.StoreRedis, Redis: &ilpv1.RedisStoreSpec{URLSecretRef: ilpv1.SecretKeyRef{Name: "r", Key: "url"}, KeyPrefix: "p:"}}
	conn.Spec.Listeners = &ilpv1.ListenersSpec{Admin: &ilpv1.ListenerSpec{Port: 9000}, Settlement: &ilpv1.ListenerSpec{Port: 9001}}
	up := account("up", 1, func(s *ilpv1.AccountSpec) { s.Relation = ilpv1.RelationParent; s.AssetCode = "EUR" })
	kid := account("kid", 2, nil)
	routes := []ilpv1.Route{
		{ObjectMeta: metav1.ObjectMeta{Name: "r2"}, Spec: ilpv1.RouteSpec{ConnectorRef: "alice", TargetPrefix: "test.z", NextHop: "kid"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "r1", CreationTimestamp: metav1.NewTime(time.Unix(1, 0))}, Spec: ilpv1.RouteSpec{ConnectorRef: "alice", TargetPrefix: "test.b", NextHop: "up"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "dup", CreationTimestamp: metav1.NewTime(time.Unix(5, 0))}, Spec: ilpv1.RouteSpec{ConnectorRef: "alice", TargetPrefix: "test.b", NextHop: "kid"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "nowhere"}, Spec: ilpv1.RouteSpec{ConnectorRef: "alice", TargetPrefix: "test.c", NextHop: "ghost"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "theirs"}, Spec: ilpv1.RouteSpec{ConnectorRef: "bob", TargetPrefix: "test.d", NextHop: "up"}},
	}
	sec := secrets(map[string]map[string]string{"r": {"k": "routing", "url": "redis://h:6379/0\n"}})
	cfg, problems, err := Build(Inputs{Connector: conn, Accounts: []ilpv1.Account{kid, up}, Routes: routes, Secret: sec})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(problems); !strings.Contains(got, "Route dup") || !strings.Contains(got, "Route nowhere") || len(problems) != 2 {
		t.Errorf("problems = %s", got)
	}
	if fmt.Sprint(cfg.Routes) != "[{test.b up} {test.z kid}]" || fmt.Sprint(cfg.AccountOrder) != "[up kid]" {
		t.Errorf("routes %v order %v", cfg.Routes, cfg.AccountOrder)
	}
	if cfg.RouteBroadcastEnabled || cfg.RouteExpiry != time.Minute || cfg.DefaultRoute != "up" || cfg.ReflectPayments || string(cfg.RoutingSecret) != "routing" {
		t.Errorf("routing: %+v", cfg)
	}
	if cfg.MaxHoldTime != 10*time.Second || cfg.MinMessageWindow != 2*time.Second || fmt.Sprint(cfg.DisableMiddleware) != "[rateLimit]" || cfg.AdminAPIPort != 9000 ||
		cfg.SettlementAPIHost != "0.0.0.0" || cfg.SettlementAPIPort != 9001 {
		t.Errorf("globals: %+v", cfg)
	}
	if cfg.Store != config.StoreRedis || string(cfg.StoreConfig) != `{"prefix":"p:","url":"redis://h:6379/0"}` {
		t.Errorf("store %s %s", cfg.Store, cfg.StoreConfig)
	}
	// 1 EUR is worth 1.08 USD: a USD→EUR packet converts at 1/1.08 less the 1 % spread.
	b, err := rates.New(cfg.Backend, cfg.BackendConfig)
	if err != nil {
		t.Fatal(err)
	}
	r, err := b.ScaledRate(rates.Asset{Code: "EUR", Scale: 9}, rates.Asset{Code: "USD", Scale: 9}, cfg.Spread)
	if err != nil || r.String() != "1.0692" {
		t.Errorf("EUR→USD rate %s, %v; want 1.08×0.99 = 1.0692", r, err)
	}
}

// TestBuildPortClash: of two Accounts on one port, the younger is left out with a problem that
// names the older; the older keeps its port (as a runtime started with both would have it).
func TestBuildPortClash(t *testing.T) {
	older := account("older", 1, nil)
	younger := account("younger", 2, func(s *ilpv1.AccountSpec) { s.Link.BTPChildServer.Port = 7001 })
	cfg, problems, err := Build(Inputs{Connector: testConnector(), Accounts: []ilpv1.Account{younger, older}, Secret: secrets(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cfg.Accounts["older"]; !ok || len(cfg.Accounts) != 1 {
		t.Errorf("accounts %v, want only the older one", slices.Sorted(maps.Keys(cfg.Accounts)))
	}
	if got := fmt.Sprint(problems); len(problems) != 1 || !strings.Contains(got, `Account younger: link.btpChildServer.port = 7001: port 7001 is already used by account "older"`) {
		t.Errorf("problems = %s", got)
	}
}

// TestBuildPortClashAcrossLinkKinds: an ILP-over-HTTP server and a BTP server on one port are
// refused like two BTP servers: the younger Account is left out, named, whichever kind it is.
func TestBuildPortClashAcrossLinkKinds(t *testing.T) {
	sec := secrets(map[string]map[string]string{"tok": {"t": "s"}})
	web := func(name string, created int, port int32) ilpv1.Account {
		return httpAccount(name, created, &ilpv1.HTTPLink{Incoming: &ilpv1.HTTPIncoming{Port: port, TokenSecretRef: ref("tok")}})
	}
	for _, tt := range []struct {
		name           string
		older, younger ilpv1.Account
		port           int
		field          string // the younger's, as its Account names it
	}{
		{"http after btp", account("older", 1, nil), web("younger", 2, 7001), 7001, "link.http.incoming.port"},
		{"btp after http", web("older", 1, 7002), account("younger", 2, nil), 7002, "link.btpChildServer.port"},
		{"http after http", web("older", 1, 7003), web("younger", 2, 7003), 7003, "link.http.incoming.port"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, problems, err := Build(Inputs{Connector: testConnector(), Accounts: []ilpv1.Account{tt.younger, tt.older}, Secret: sec})
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := cfg.Accounts["older"]; !ok || len(cfg.Accounts) != 1 {
				t.Errorf("accounts %v, want only the older one", slices.Sorted(maps.Keys(cfg.Accounts)))
			}
			msg := fmt.Sprintf(`Account younger: %s = %d: port %d is already used by account "older"`, tt.field, tt.port, tt.port)
			if got := fmt.Sprint(problems); len(problems) != 1 || !strings.Contains(got, msg) {
				t.Errorf("problems = %s, want %q", got, msg)
			}
		})
	}
}

// TestBuildReservedPorts: an Account on one of the Connector's own ports is left out, whatever
// its age and link kind, and the Connector's listener keeps its port.
func TestBuildReservedPorts(t *testing.T) {
	conn := testConnector()
	conn.Spec.Listeners = &ilpv1.ListenersSpec{Settlement: &ilpv1.ListenerSpec{Port: 7771}}
	onPort := func(name string, created int, port int32) ilpv1.Account {
		return account(name, created, func(s *ilpv1.AccountSpec) { s.Link.BTPChildServer.Port = port })
	}
	onHTTP := httpAccount("onhttp", 3, &ilpv1.HTTPLink{Incoming: &ilpv1.HTTPIncoming{Port: 7771, TokenSecretRef: ref("tok")}})
	accounts := []ilpv1.Account{onPort("onadmin", 1, 7780), onPort("onsettle", 2, 7771), onHTTP, onPort("fine", 4, 7004)}
	cfg, problems, err := Build(Inputs{Connector: conn, Accounts: accounts, Secret: secrets(map[string]map[string]string{"tok": {"t": "s"}})})
	if err != nil {
		t.Fatal(err)
	}
	if got := slices.Sorted(maps.Keys(cfg.Accounts)); !slices.Equal(got, []string{"fine"}) {
		t.Errorf("accounts %v, want only fine", got)
	}
	got := fmt.Sprint(problems)
	for _, want := range []string{"Account onadmin: link port 7780 is the Connector's listeners.admin port",
		"Account onsettle: link port 7771 is the Connector's listeners.settlement port", "Account onhttp: link port 7771 is the Connector's listeners.settlement port"} {
		if !strings.Contains(got, want) {
			t.Errorf("problems %s: want %q", got, want)
		}
	}
}

// TestBuildECBRates: rates.ecb becomes the ecb backend's backendConfig, durations in ms.
func TestBuildECBRates(t *testing.T) {
	for _, tt := range []struct {
		name string
		ecb  *ilpv1.ECBRatesSpec
		want string
	}{
		{"defaults", nil, `{}`},
		{"empty", &ilpv1.ECBRatesSpec{}, `{}`},
		{"all", &ilpv1.ECBRatesSpec{URL: "http://mirror.internal/eurofxref-daily.xml",
			RefreshInterval: &metav1.Duration{Duration: 30 * time.Minute}, MaxAge: &metav1.Duration{Duration: 48 * time.Hour}},
			`{"maxAge":172800000,"refreshInterval":1800000,"url":"http://mirror.internal/eurofxref-daily.xml"}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conn := testConnector()
			conn.Spec.Rates = &ilpv1.RatesSpec{Backend: "ecb", ECB: tt.ecb}
			cfg, _, err := Build(Inputs{Connector: conn, Secret: secrets(nil)})
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Backend != "ecb" || string(cfg.BackendConfig) != tt.want {
				t.Fatalf("backend %s %s, want ecb %s", cfg.Backend, cfg.BackendConfig, tt.want)
			}
			if _, err := rates.New(cfg.Backend, cfg.BackendConfig); err != nil {
				t.Fatalf("the backend refuses its config: %v", err)
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	bad := testConnector()
	bad.Spec.Network = "production" // test.alice on production: refused by Validate
	badSpread := testConnector()
	badSpread.Spec.Rates = &ilpv1.RatesSpec{Spread: "1"}
	noSecret := testConnector()
	noSecret.Spec.Routing = &ilpv1.RoutingSpec{RoutingSecretRef: &ilpv1.SecretKeyRef{Name: "gone", Key: "k"}}
	for _, tt := range []struct {
		name string
		conn *ilpv1.Connector
		want string
	}{
		{"network mismatch", bad, `ilpAddress = "test.alice": a test. (test network) address is not allowed on the production network; the Connector's network is "production": use an address of that network or set the Connector's network to match`},
		{"spread out of range", badSpread, "invalid Connector alice: rates.spread = 1: expected a fraction"},
		{"connector secret missing", noSecret, `routing.routingSecretRef: Secret "gone"`},
		{"no connector", nil, "no Connector"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Build(Inputs{Connector: tt.conn, Secret: secrets(nil)})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}
