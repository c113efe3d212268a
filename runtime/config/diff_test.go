package config

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/shopspring/decimal"
)

func TestDiff(t *testing.T) {
	acct := func(mut func(*Account)) Account {
		max := int64(1000)
		a := Account{Relation: RelationPeer, Plugin: PluginBTP, AssetCode: "USD", AssetScale: 9,
			Balance: &Balance{Maximum: &max}, Options: json.RawMessage(`{"server":"btp+ws://a","secret":"x"}`)}
		if mut != nil {
			mut(&a)
		}
		return a
	}
	cfg := func(mut func(*Config)) *Config {
		c := Defaults()
		c.ILPAddress = "test.a"
		c.Accounts = map[string]Account{"a": acct(nil), "b": acct(nil)}
		if mut != nil {
			mut(c)
		}
		return c
	}
	tests := []struct {
		name string
		new  *Config
		want Changes
	}{
		{"same", cfg(nil), Changes{}},
		{"options reordered is the same", cfg(func(c *Config) {
			c.Accounts["a"] = acct(func(a *Account) { a.Options = json.RawMessage(`{ "secret":"x", "server":"btp+ws://a" }`) })
		}), Changes{}},
		{"explicit default route flag is the same", cfg(func(c *Config) {
			c.Accounts["a"] = acct(func(a *Account) { t := true; a.SendRoutes = &t })
		}), Changes{}},
		{"added and removed", cfg(func(c *Config) { delete(c.Accounts, "b"); c.Accounts["c"] = acct(nil) }),
			Changes{Added: []string{"c"}, Removed: []string{"b"}}},
		{"limits only", cfg(func(c *Config) {
			c.Accounts["a"] = acct(func(a *Account) {
				m := int64(5)
				a.Balance.Maximum = &m
				a.RateLimit = &RateLimit{RefillPeriod: 1, RefillCount: 1}
			})
		}), Changes{Changed: []AccountChange{{ID: "a", Fields: []string{"balance", "rateLimit"}}}}},
		{"credentials force reconnect", cfg(func(c *Config) {
			c.Accounts["b"] = acct(func(a *Account) { a.Options = json.RawMessage(`{"server":"btp+ws://a","secret":"y"}`) })
		}), Changes{Changed: []AccountChange{{ID: "b", Fields: []string{"options"}, Reconnect: true}}}},
		{"plugin forces reconnect", cfg(func(c *Config) {
			c.Accounts["b"] = acct(func(a *Account) { a.Plugin = PluginMiniAccounts; a.MaxPacketAmount = new(uint64) })
		}), Changes{Changed: []AccountChange{{ID: "b", Fields: []string{"plugin", "maxPacketAmount"}, Reconnect: true}}}},
		{"routes", cfg(func(c *Config) { c.Routes = []Route{{"test.x", "a"}} }), Changes{RoutesChanged: true}},
		{"globals", cfg(func(c *Config) { c.Spread = decimal.RequireFromString("0.01"); c.AdminAPI = true }),
			Changes{Globals: []string{"adminApi", "spread"}}},
		{"new first parent changes default route and address source", cfg(func(c *Config) {
			c.ILPAddress = ""
			c.Accounts["up"] = acct(func(a *Account) { a.Relation = RelationParent })
		}), Changes{Added: []string{"up"}, RoutesChanged: true, Globals: []string{"ilpAddress", "ilpAddressInheritFrom"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Diff(cfg(nil), tt.new)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
			if got.Empty() != reflect.DeepEqual(tt.want, Changes{}) {
				t.Errorf("Empty() = %v", got.Empty())
			}
		})
	}
	if ch := Diff(nil, cfg(nil)); len(ch.Added) != 2 || len(ch.Globals) != len(settings)-3 {
		t.Errorf("from nil: %+v", ch)
	}
}
