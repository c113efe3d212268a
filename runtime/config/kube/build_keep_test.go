package kube

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/runtime/config"
)

// btpClient is a parent Account dialling bob with the token in Secret sec, key t.
func btpClient(name string, created int, sec string) ilpv1.Account {
	return account(name, created, func(s *ilpv1.AccountSpec) {
		s.Relation = ilpv1.RelationParent
		s.Link = ilpv1.AccountLink{BTPClient: &ilpv1.BTPClientLink{URL: "btp+ws://bob:1", TokenSecretRef: ilpv1.SecretKeyRef{Name: sec, Key: "t"}}}
	})
}

// TestBuildKeepsRunningAccountWhenItsSecretFails: a running Account whose credentials cannot be
// read any more — a typo in the Secret's name, the key gone, an empty value, the API server
// away — keeps its running version (a bad config is refused keeping the last good one; the
// walkthrough's alice-bob peering was torn down by a typo), with a problem that says why. A
// new Account with such a Secret is left out, as before.
func TestBuildKeepsRunningAccountWhenItsSecretFails(t *testing.T) {
	good := secrets(map[string]map[string]string{"tok": {"t": "one"}})
	for _, tt := range []struct {
		name    string
		secret  func(name, key string) ([]byte, error)
		ref     string // the Secret the Account names now
		problem string
	}{
		{"Secret renamed to one that does not exist", good, "tok-typo", `link.btpClient.tokenSecretRef: Secret "tok-typo" does not exist`},
		{"key gone", secrets(map[string]map[string]string{"tok": {"x": "one"}}), "tok", `Secret "tok" has no key "t"`},
		{"value empty", secrets(map[string]map[string]string{"tok": {"t": "\n"}}), "tok", `key "t" of Secret "tok" is empty`},
		{"API server away", func(string, string) ([]byte, error) { return nil, fmt.Errorf("%w: API down", ErrSecretUnavailable) }, "tok", "API down"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			prev, _, err := Build(Inputs{Connector: testConnector(), Accounts: []ilpv1.Account{btpClient("up", 1, "tok")}, Secret: good})
			if err != nil {
				t.Fatal(err)
			}
			in := Inputs{Connector: testConnector(), Previous: prev, Secret: tt.secret,
				Accounts: []ilpv1.Account{btpClient("up", 1, tt.ref), btpClient("new", 2, tt.ref)}}
			cfg, problems, err := Build(in)
			if err != nil {
				t.Fatal(err)
			}
			if got, ok := cfg.Accounts["up"]; !ok || string(got.Options) != string(prev.Accounts["up"].Options) {
				t.Errorf("the running account: configured %v, options %s; want its previous options %s", ok, got.Options, prev.Accounts["up"].Options)
			}
			if !slices.Equal(cfg.AccountOrder, []string{"up"}) {
				t.Errorf("accounts %v, want only the running one (the new one left out)", cfg.AccountOrder)
			}
			want := map[string]string{"up": tt.problem + "; the connector keeps running this account's previous version", "new": tt.problem}
			if len(problems) != 2 {
				t.Fatalf("problems %v, want one per account", problems)
			}
			for _, p := range problems {
				if p.Kind != "Account" || !strings.Contains(p.Message, tt.problem) || strings.HasSuffix(want[p.Name], "version") != strings.HasSuffix(p.Message, "version") {
					t.Errorf("problem %s, want %q", p, want[p.Name])
				}
			}
		})
	}
}

// TestBuildKeptAccountFollowsItsObject: the previous version is kept only while the Account
// exists and its Secret fails: deleting the Account (or moving it to another Connector)
// removes it, and once the Secret is there the new version applies.
func TestBuildKeptAccountFollowsItsObject(t *testing.T) {
	sec := secrets(map[string]map[string]string{"tok": {"t": "one"}, "tok2": {"t": "two"}})
	prev, _, err := Build(Inputs{Connector: testConnector(), Accounts: []ilpv1.Account{btpClient("up", 1, "tok")}, Secret: sec})
	if err != nil {
		t.Fatal(err)
	}
	deleting := btpClient("up", 1, "gone")
	gone := metav1.NewTime(time.Unix(100, 0))
	deleting.DeletionTimestamp = &gone
	moved := btpClient("up", 1, "gone")
	moved.Spec.ConnectorRef = "bob"
	for _, tt := range []struct {
		name     string
		accounts []ilpv1.Account
		want     string // the account's server option; "" for none
	}{
		{"deleted", nil, ""},
		{"being deleted", []ilpv1.Account{deleting}, ""},
		{"moved to another Connector", []ilpv1.Account{moved}, ""},
		{"the new Secret appears", []ilpv1.Account{btpClient("up", 1, "tok2")}, `{"server":"btp+ws://:two@bob:1"}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, problems, err := Build(Inputs{Connector: testConnector(), Accounts: tt.accounts, Previous: prev, Secret: sec})
			if err != nil || len(problems) > 0 {
				t.Fatal(err, problems)
			}
			a, ok := cfg.Accounts["up"]
			if tt.want == "" && ok {
				t.Fatalf("the account is still configured: %s", a.Options)
			}
			if tt.want != "" && string(a.Options) != tt.want {
				t.Fatalf("options %s, want %s", a.Options, tt.want)
			}
		})
	}
}

// TestBuildNamesAPIFields: the problems and errors of Build name the fields the user wrote in
// the Account, Route or Connector, never the runtime's own (options, backendConfig, env,
// routes[i]), and a Route the runtime refuses is left out instead of stopping the Connector.
func TestBuildNamesAPIFields(t *testing.T) {
	sec := secrets(map[string]map[string]string{"tok": {"t": "s"}})
	listener := func(name string, created int, port int32) ilpv1.Account {
		return account(name, created, func(s *ilpv1.AccountSpec) {
			s.Relation = ilpv1.RelationPeer
			s.Link = ilpv1.AccountLink{BTPListener: &ilpv1.BTPListenerLink{Port: port, SecretRef: ilpv1.SecretKeyRef{Name: "tok", Key: "t"}}}
		})
	}
	route := func(name, prefix, hop string) ilpv1.Route {
		return ilpv1.Route{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: ilpv1.RouteSpec{ConnectorRef: "alice", TargetPrefix: prefix, NextHop: hop}}
	}
	static := testConnector()
	static.Spec.Rates = &ilpv1.RatesSpec{Backend: "static", Rates: map[string]ilpv1.DecimalString{"USD": "1"}}
	for _, tt := range []struct {
		name     string
		conn     *ilpv1.Connector
		accounts []ilpv1.Account
		routes   []ilpv1.Route
		want     string // in the problems
		missing  string // the object left out
	}{
		{"btp listener port clash", testConnector(), []ilpv1.Account{listener("alice-bob", 1, 7768), listener("clash3", 2, 7768)}, nil,
			`Account clash3: link.btpListener.port = 7768: port 7768 is already used by account "alice-bob"`, "clash3"},
		{"asset the static rates lack", static, []ilpv1.Account{account("ok", 1, nil), account("xrp", 2, func(s *ilpv1.AccountSpec) { s.AssetCode = "XRP" })}, nil,
			`Account xrp: assetCode = "XRP": the static backend has no price for it: add it to the Connector's rates.rates`, "xrp"},
		{"route prefix of the other network", testConnector(), []ilpv1.Account{account("ok", 1, nil)},
			[]ilpv1.Route{route("good", "test.bob", "ok"), route("live", "g.bob", "ok")},
			`Route live: targetPrefix = "g.bob": a g. (live network) address is not allowed on the test network; the Connector's network is "test"`, "live"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, problems, err := Build(Inputs{Connector: tt.conn, Accounts: tt.accounts, Routes: tt.routes, Secret: sec})
			if err != nil {
				t.Fatal(err)
			}
			got := fmt.Sprint(problems)
			if len(problems) != 1 || !strings.Contains(got, tt.want) {
				t.Errorf("problems %s, want %q", got, tt.want)
			}
			if _, ok := cfg.Accounts[tt.missing]; ok || slices.ContainsFunc(cfg.Routes, func(r config.Route) bool { return r.TargetPrefix == "g.bob" }) {
				t.Errorf("%s is configured", tt.missing)
			}
			if len(cfg.Accounts) == 0 {
				t.Error("the other accounts were left out")
			}
			for _, runtimeName := range []string{"options", "backendConfig", "env ", "routes["} {
				if strings.Contains(got, runtimeName) {
					t.Errorf("problems %s name the runtime's %q", got, runtimeName)
				}
			}
		})
	}
}
