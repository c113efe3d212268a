package config

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/testwait"
)

const yamlConfig = `
ilpAddress: test.acme
backend: one-to-one
spread: 0.001
routeBroadcastInterval: 10000
accounts:
  zeta:
    relation: parent
    plugin: ilp-plugin-btp
    assetCode: USD
    assetScale: 9
    options: {server: "btp+wss://:s@up.example"}
  alpha:
    relation: child
    plugin: ilp-plugin-mini-accounts
    assetCode: USD
    assetScale: 9
    balance: {minimum: "-1000", maximum: "5000", settleThreshold: "-500", settleTo: "0"}
    rateLimit: {refillPeriod: 1000, refillCount: 100}
routes:
  - {targetPrefix: test.other, peerId: zeta}
disableMiddleware: [deduplicate]
`

func TestFromFileYAMLAndJSON(t *testing.T) {
	dir := t.TempDir()
	yp := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(yp, []byte(yamlConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := FromFile(yp)
	if err != nil {
		t.Fatal(err)
	}
	if c.Spread.String() != "0.001" || c.RouteBroadcastInterval != 10*time.Second || len(c.Routes) != 1 || c.DisableMiddleware[0] != "deduplicate" {
		t.Errorf("globals: %+v", c)
	}
	if got := strings.Join(c.AccountOrder, ","); got != "zeta,alpha" {
		t.Errorf("YAML account order %q, want zeta,alpha", got)
	}
	if b := c.Accounts["alpha"].Balance; b == nil || *b.Minimum != -1000 || *b.Maximum != 5000 || *b.SettleThreshold != -500 {
		t.Errorf("balance %+v", b)
	}
	if r := c.Accounts["alpha"].RateLimit; r.Capacity != 100 || r.RefillPeriod != time.Second {
		t.Errorf("rateLimit %+v", r)
	}
	jp := filepath.Join(dir, "c.json")
	js := `{"ilpAddress":"test.acme","accounts":{"b":{"relation":"child","plugin":"ilp-plugin-btp","assetCode":"USD","assetScale":2,"maxPacketAmount":"99999999999999999999"}}}`
	if err := os.WriteFile(jp, []byte(js), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := FromFile(jp); err != nil || *c.Accounts["b"].MaxPacketAmount != ^uint64(0) {
		t.Errorf("JSON: %v %v", c, err)
	}
}

func TestFromDataErrors(t *testing.T) {
	tests := []struct{ name, doc, want string }{
		{"unknown key", "ilpAddress: test.a\nspred: 0.1\n", `config file x: spred: unknown config key (did you mean "spread"?)`},
		{"wrong type", "ilpAddress: test.a\nadminApi: 'yes'\n", `config file x: adminApi = "yes": expected true or false`},
		{"bad yaml", "ilpAddress: [", "config file x: invalid YAML"},
		{"bad json", `{"ilpAddress": }`, "config file x: invalid JSON"},
		{"not a mapping", "- a\n- b\n", "expected a mapping of config keys"},
		{"account field", "ilpAddress: test.a\naccounts: {a: {relation: peer, plugin: ilp-plugin-btp, assetCode: X, assetScale: -1}}\n", `config file x: account "a": assetScale = -1: expected an integer from 0 to 255`},
		{"middlewares", "ilpAddress: test.a\nmiddlewares: {x: {type: y}}\n", "custom middlewares are npm modules"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := FromData([]byte(tt.doc), "config file x")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want %q", err, tt.want)
			}
		})
	}
}

func TestValidateCollectsEveryError(t *testing.T) {
	max, min := int64(10), int64(50)
	c := Defaults()
	c.Env = "staging"
	c.ILPAddress = "test..x"
	c.Spread = c.Spread.Neg()
	c.Accounts = map[string]Account{
		"p1":  {Relation: RelationParent, Plugin: PluginBTP, AssetCode: "USD"},
		"p2":  {Relation: RelationParent, Plugin: PluginBTP, AssetCode: "USD"},
		"k":   {Relation: "kid", Plugin: "ilp-plugin-xrp-paychan", Balance: &Balance{Minimum: &min, Maximum: &max}, RateLimit: &RateLimit{}},
		"a b": {Relation: RelationChild, Plugin: PluginBTP, AssetCode: "USD", Throughput: &Throughput{}},
	}
	c.ILPAddressInheritFrom = "k"
	c.Routes = []Route{{TargetPrefix: "nope.x", PeerID: "p1"}, {TargetPrefix: "test.y", PeerID: "ghost"}}
	c.DefaultRoute = "ghost"
	c.Store = StoreFile
	err := c.Validate()
	want := []string{
		`env = "staging": expected "test" or "production"`,
		`ilpAddress = "test..x": empty segment`,
		`ilpAddressInheritFrom = "k": account has relation "kid"`,
		`account "k": relation = "kid"`,
		`account "k": plugin = "ilp-plugin-xrp-paychan": not supported`,
		`account "k": assetCode: required`,
		`account "k": balance.minimum = 50: greater than balance.maximum (10)`,
		`account "k": rateLimit.refillPeriod`,
		`account "k": rateLimit.refillCount = 0`,
		`account "a b": (account id): expected letters`,
		`account "a b": throughput.refillPeriod`,
		`routes[0].targetPrefix = "nope.x"`,
		`routes[1].peerId = "ghost": no such account`,
		`defaultRoute = "ghost"`,
		`spread = -0.002`,
		`storePath: required with store "file"`,
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in\n%v", w, err)
		}
	}
	if n := len(FieldErrors(err)); n != len(want) {
		t.Errorf("%d errors, want %d:\n%v", n, len(want), err)
	}
}

func TestValidateParentsAndBalance(t *testing.T) {
	parent := Account{Relation: RelationParent, Plugin: PluginBTP, AssetCode: "USD"}
	i := func(v int64) *int64 { return &v }
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string // "" = valid
	}{
		{"one parent inherits", func(c *Config) { c.Accounts["up"] = parent }, ""},
		{"two parents unordered", func(c *Config) { c.Accounts["a"], c.Accounts["b"] = parent, parent }, "several parents (a, b)"},
		{"two parents ordered", func(c *Config) {
			c.Accounts["a"], c.Accounts["b"] = parent, parent
			c.AccountOrder = []string{"b", "a"}
		}, ""},
		{"two parents explicit", func(c *Config) {
			c.Accounts["a"], c.Accounts["b"] = parent, parent
			c.ILPAddressInheritFrom, c.DefaultRoute = "b", "b"
		}, ""},
		{"settleTo above maximum", func(c *Config) {
			a := parent
			a.Balance = &Balance{Maximum: i(100), SettleTo: 200}
			c.Accounts["up"] = a
		}, "balance.settleTo = 200: outside the balance bounds [-Infinity, 100]"},
		{"threshold above settleTo", func(c *Config) {
			a := parent
			a.Balance = &Balance{Maximum: i(100), SettleThreshold: i(10), SettleTo: 0}
			c.Accounts["up"] = a
		}, "balance.settleThreshold = 10: greater than balance.settleTo (0)"},
		{"duplicate child segment", func(c *Config) {
			c.ILPAddress = "test.a"
			c.Accounts["x"] = Account{Relation: RelationChild, Plugin: PluginBTP, AssetCode: "USD", ILPAddressSegment: "y"}
			c.Accounts["y"] = Account{Relation: RelationChild, Plugin: PluginBTP, AssetCode: "USD"}
		}, `same child address segment as account "x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Defaults()
			tt.mutate(c)
			err := c.Validate()
			if tt.want == "" && err != nil {
				t.Fatal(err)
			}
			if tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
}

// writeFile replaces the file's content the way an editor or kubelet does: whole.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestWatcherKeepsLastGoodConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	writeFile(t, path, "ilpAddress: test.one\n")
	w, err := NewWatcher(path, 5*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	changes := make(chan *Config, 10)
	errs := make(chan error, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = w.Run(ctx, func(_, c *Config) error { mu.Lock(); defer mu.Unlock(); changes <- c; return nil }, func(e error) { errs <- e })
	}()
	defer func() { cancel(); <-done }()

	wait := func(what string) any {
		t.Helper()
		select {
		case c := <-changes:
			return c
		case e := <-errs:
			return e
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s within 5 s", what)
		}
		return nil
	}
	writeFile(t, path, "ilpAddress: g.bad\n") // invalid on the test network
	if e, ok := wait("error").(error); !ok || !strings.Contains(e.Error(), "keeping the last valid config") {
		t.Fatalf("got %v, want an error", e)
	}
	if got := w.Current().ILPAddress; got != "test.one" {
		t.Fatalf("current address %q after a bad write, want test.one", got)
	}
	writeFile(t, path, "ilpAddress: test.two\n")
	if c, ok := wait("change").(*Config); !ok || c.ILPAddress != "test.two" {
		t.Fatalf("got %v, want the new config", c)
	}
	// Current follows once the change is taken (onChange returned nil).
	testwait.Eventually(t, "current address test.two", 500, func() bool { return w.Current().ILPAddress == "test.two" })
}

// TestWatcherPoll follows the file through polls: a new content is used once two polls in a
// row read it, an invalid one is reported once, and one its caller refuses is offered again
// after RetryRefused (or at once when the file changes), never before.
func TestWatcherPoll(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	writeFile(t, path, "ilpAddress: test.one\n")
	w, err := NewWatcher(path, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1_700_000_000, 0)
	steps := []struct {
		write   string        // new file content, "" to leave it
		at      time.Duration // since t0
		refuse  bool          // the caller refuses what it is offered
		offered string        // address offered to the caller, "" for none
		err     string        // substring of poll's error
		current string        // Current's address after the poll
	}{
		{at: 0, current: "test.one"},
		{write: "ilpAddress: test.two\n", at: 1 * time.Second, current: "test.one"}, // read once: may be half-written
		{at: 2 * time.Second, offered: "test.two", current: "test.two"},
		{at: 3 * time.Second, current: "test.two"},
		{write: "ilpAddress: g.bad\n", at: 4 * time.Second, current: "test.two"},
		{at: 5 * time.Second, err: "keeping the last valid config", current: "test.two"},
		{at: 6 * time.Second, current: "test.two"}, // reported once
		{write: "ilpAddress: test.three\n", at: 7 * time.Second, current: "test.two"},
		{at: 8 * time.Second, refuse: true, offered: "test.three", current: "test.two"},
		{at: 9 * time.Second, current: "test.two"},
		{at: 8*time.Second + RetryRefused - time.Millisecond, current: "test.two"},
		{at: 8*time.Second + RetryRefused, offered: "test.three", current: "test.three"},
		{write: "ilpAddress: test.four\n", at: 50 * time.Second, current: "test.three"},
		{at: 51 * time.Second, refuse: true, offered: "test.four", current: "test.three"},
		{write: "ilpAddress: test.three\n", at: 52 * time.Second, current: "test.three"}, // back to the config in force
		{write: "ilpAddress: test.four\n", at: 53 * time.Second, current: "test.three"},
		{at: 54 * time.Second, offered: "test.four", current: "test.four"}, // changed since the refusal: at once
	}
	for i, s := range steps {
		if s.write != "" {
			writeFile(t, path, s.write)
		}
		offered := ""
		err := w.poll(t0.Add(s.at), func(old, c *Config) error {
			if old != w.Current() {
				t.Errorf("step %d: old is not the config in force", i)
			}
			offered = c.ILPAddress
			if s.refuse {
				return errors.New("refused")
			}
			return nil
		})
		if offered != s.offered {
			t.Errorf("step %d: offered %q, want %q", i, offered, s.offered)
		}
		if (err == nil) != (s.err == "") || err != nil && !strings.Contains(err.Error(), s.err) {
			t.Errorf("step %d: error %v, want %q", i, err, s.err)
		}
		if got := w.Current().ILPAddress; got != s.current {
			t.Errorf("step %d: current %q, want %q", i, got, s.current)
		}
	}
}

func TestNewWatcherRefusesInvalidStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	writeFile(t, path, "ilpAddress: nope\n")
	if _, err := NewWatcher(path, time.Millisecond); err == nil {
		t.Fatal("want an error")
	}
}
