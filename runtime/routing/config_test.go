package routing

import (
	"strings"
	"testing"

	"github.com/ilpfleet/ilpfleet/runtime/config"
)

func testConfig() *config.Config {
	cfg := config.Defaults()
	cfg.Env = config.EnvTest
	cfg.Accounts = map[string]config.Account{
		"zparent": {Relation: config.RelationParent},
		"mparent": {Relation: config.RelationParent},
		"peer1":   {Relation: config.RelationPeer},
		"alice":   {Relation: config.RelationChild},
		"bob":     {Relation: config.RelationChild, ILPAddressSegment: "b0b"},
	}
	return cfg
}

func hop(t *testing.T, tbl *Table, dest string) string {
	t.Helper()
	r, ok := tbl.Lookup(dest)
	if !ok {
		return "<none>"
	}
	return r.NextHop
}

func TestFromConfigLocalChildDefault(t *testing.T) {
	tbl, err := FromConfig(testConfig(), "test.conn")
	if err != nil {
		t.Fatal(err)
	}
	for dest, want := range map[string]string{
		"test.conn.alice.x": "alice",
		"test.conn.b0b":     "bob",
		"test.conn.bob":     "", // bob's address is its segment, not its id: falls to the local route
		"test.conn":         "",
		"test.elsewhere":    "mparent", // "auto": first parent (no AccountOrder: by sorted id)
		"g.live":            "<none>",  // default route only covers the test network's prefix
		"private.x":         "<none>",
	} {
		if got := hop(t, tbl, dest); got != want {
			t.Errorf("%s → %q, want %q", dest, got, want)
		}
	}
	r, _ := tbl.Get("test.conn.alice")
	if r.Source != SourceChild || r.Relation != config.RelationChild {
		t.Errorf("child route = %+v", r)
	}
	if r, _ := tbl.Get("test"); r.Source != SourceDefault || r.Relation != config.RelationParent {
		t.Errorf("default route = %+v", r)
	}
}

func TestFromConfigDefaultRouteModes(t *testing.T) {
	tests := []struct {
		env, def, want string
		prefix         string
		order          []string // the order of the accounts object
	}{
		{config.EnvProduction, "auto", "mparent", "g", nil},
		// "auto" is the first parent in the accounts object, as the address's parent is.
		{config.EnvTest, "auto", "zparent", "test", []string{"peer1", "zparent", "mparent"}},
		{config.EnvTest, "", "<none>", "test", nil},
		{config.EnvTest, "peer1", "peer1", "test", nil},
		{"", "zparent", "zparent", "test", nil},
	}
	for _, tc := range tests {
		cfg := testConfig()
		cfg.Env, cfg.DefaultRoute, cfg.AccountOrder = tc.env, tc.def, tc.order
		if tc.def == "auto" && cfg.InheritFrom() != tc.want {
			t.Errorf("order %v: the address comes from %q, the default route goes to %q", tc.order, cfg.InheritFrom(), tc.want)
		}
		tbl, err := FromConfig(cfg, "private.conn")
		if err != nil {
			t.Fatalf("env %q default %q: %v", tc.env, tc.def, err)
		}
		if got := hop(t, tbl, tc.prefix+".somewhere"); got != tc.want {
			t.Errorf("env %q default %q: → %q, want %q", tc.env, tc.def, got, tc.want)
		}
	}
	cfg := testConfig()
	delete(cfg.Accounts, "zparent")
	delete(cfg.Accounts, "mparent")
	tbl, err := FromConfig(cfg, "test.conn")
	if err != nil {
		t.Fatal(err)
	}
	if got := hop(t, tbl, "test.x"); got != "<none>" {
		t.Errorf("auto without a parent routed to %q", got)
	}
}

func TestFromConfigStaticRoutes(t *testing.T) {
	cfg := testConfig()
	cfg.Routes = []config.Route{
		{TargetPrefix: "test.conn.alice", PeerID: "peer1"}, // overrides the child route
		{TargetPrefix: "test", PeerID: "zparent"},          // overrides the default route
		{TargetPrefix: "g.far", PeerID: "peer1"},
		{TargetPrefix: "g.far", PeerID: "peer1"}, // exact repeat is harmless
	}
	learned := []Route{
		{Prefix: "g.far", NextHop: "zparent", Source: SourceLearned},
		{Prefix: "g.far.near", NextHop: "zparent", Path: []string{"g.x"}, Source: SourceConfigured}, // source forced to learned
		{Prefix: "g.gone", NextHop: "removed-account", Source: SourceLearned},
	}
	tbl, err := FromConfig(cfg, "test.conn", learned...)
	if err != nil {
		t.Fatal(err)
	}
	for dest, want := range map[string]string{
		"test.conn.alice.x": "peer1",
		"test.conn.b0b":     "bob",
		"test.other":        "zparent",
		"g.far.x":           "peer1",
		"g.far.near.x":      "zparent", // longer learned prefix still wins
		"g.gone":            "<none>",
	} {
		if got := hop(t, tbl, dest); got != want {
			t.Errorf("%s → %q, want %q", dest, got, want)
		}
	}
	if r, _ := tbl.Get("g.far.near"); r.Source != SourceLearned || r.Relation != config.RelationParent {
		t.Errorf("learned route = %+v", r)
	}
}

func TestFromConfigErrors(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*config.Config)
		own    string
		want   []string
	}{
		{"static peer missing", func(c *config.Config) {
			c.Routes = []config.Route{{TargetPrefix: "g.x", PeerID: "carol"}}
		}, "test.conn", []string{`routes[0]: peerId "carol" for targetPrefix "g.x" is not an account (accounts: alice, bob, mparent, peer1, zparent)`}},
		{"static empty prefix", func(c *config.Config) {
			c.Routes = []config.Route{{TargetPrefix: "", PeerID: "peer1"}}
		}, "test.conn", []string{"routes[0]: targetPrefix is empty; use defaultRoute"}},
		{"static bad prefix", func(c *config.Config) {
			c.Routes = []config.Route{{TargetPrefix: "g.x.", PeerID: "peer1"}}
		}, "test.conn", []string{"routes[0]: targetPrefix: routing: prefix \"g.x.\" has an empty segment"}},
		{"static peer prefix", func(c *config.Config) {
			c.Routes = []config.Route{{TargetPrefix: "peer.config", PeerID: "peer1"}}
		}, "test.conn", []string{"is under peer., which is never forwarded"}},
		{"static conflict", func(c *config.Config) {
			c.Routes = []config.Route{{TargetPrefix: "g.x", PeerID: "peer1"}, {TargetPrefix: "g.x", PeerID: "alice"}}
		}, "test.conn", []string{`routes[1]: targetPrefix "g.x" already goes to "peer1" in routes[0]`}},
		{"default missing", func(c *config.Config) { c.DefaultRoute = "nobody" }, "test.conn",
			[]string{`defaultRoute: account "nobody" does not exist`}},
		{"bad env", func(c *config.Config) { c.Env = "staging" }, "test.conn", []string{`env: routing: env "staging"`}},
		{"children without address", func(*config.Config) {}, "", []string{
			"accounts.alice: a child account needs the connector's ILP address", "accounts.bob:"}},
		{"bad child segment", func(c *config.Config) {
			c.Accounts["alice"] = config.Account{Relation: config.RelationChild, ILPAddressSegment: "a.b"}
		}, "test.conn", []string{"accounts.alice: the child address segment"}},
		{"duplicate child address", func(c *config.Config) {
			c.Accounts["carol"] = config.Account{Relation: config.RelationChild, ILPAddressSegment: "alice"}
		}, "test.conn", []string{"accounts.carol: child address test.conn.alice is already the address of account alice"}},
		{"several at once", func(c *config.Config) {
			c.DefaultRoute = "nobody"
			c.Routes = []config.Route{{TargetPrefix: "g.x", PeerID: "carol"}}
		}, "test.conn", []string{"defaultRoute:", "routes[0]:"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			tc.mutate(cfg)
			tbl, err := FromConfig(cfg, tc.own)
			if err == nil {
				t.Fatalf("no error; table has %d routes", tbl.Len())
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestChildAddress(t *testing.T) {
	if got := ChildAddress("g.c", "id", config.Account{}); got != "g.c.id" {
		t.Errorf("got %q", got)
	}
	if got := ChildAddress("g.c", "id", config.Account{ILPAddressSegment: "seg"}); got != "g.c.seg" {
		t.Errorf("got %q", got)
	}
}

func TestInNetwork(t *testing.T) {
	cases := []struct {
		prefix, global string
		want           bool
	}{
		{"test.a", "test", true},
		{"test1.a", "test", true},
		{"test2.a.b", "test", true},
		{"test3.a", "test", true},
		{"test4.a", "test", false},
		{"testing.a", "test", false},
		{"test", "test", false},
		{"test1", "test", false},
		{"test.", "test", false},
		{"g.a", "test", false},
		{"g.a", "g", true},
		{"g", "g", false},
		{"test.a", "g", false},
		{"private.a", "test", false},
		{"", "test", false},
	}
	for _, c := range cases {
		if got := InNetwork(c.prefix, c.global); got != c.want {
			t.Errorf("InNetwork(%q, %q) = %v, want %v", c.prefix, c.global, got, c.want)
		}
	}
}
