package config

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestValidateListeners(t *testing.T) {
	btpServer := func(host string, port int) Account {
		lis := map[string]any{"port": port, "secret": "s"}
		if host != "" {
			lis["host"] = host
		}
		b, _ := json.Marshal(map[string]any{"listener": lis})
		return Account{Plugin: PluginBTP, Options: b}
	}
	mini := func(opts string) Account { return Account{Plugin: PluginMiniAccounts, Options: json.RawMessage(opts)} }
	httpIn := func(port int) Account {
		b, _ := json.Marshal(map[string]any{"incoming": map[string]any{"port": port, "staticToken": "t"}})
		return Account{Plugin: PluginHTTP, Options: b}
	}
	client := Account{Plugin: PluginBTP, Options: json.RawMessage(`{"server":"btp+ws://:s@127.0.0.1:7000"}`)}
	withEngine := func(a Account) Account { a.SettlementEngine = &SettlementEngine{URL: "http://127.0.0.1:1"}; return a }
	tests := []struct {
		name string
		edit func(c *Config)
		want string // "" for no error, else "<account>|<field>|<message part>"
	}{
		{"two servers on one port", func(c *Config) {
			c.Accounts = map[string]Account{"a": btpServer("", 7000), "b": btpServer("", 7000)}
		}, `b|options.listener.port|port 7000 is already used by account "a" (options.listener.port)`},
		{"the later account in the accounts object gets the error", func(c *Config) {
			c.Accounts = map[string]Account{"a": btpServer("", 7000), "b": btpServer("", 7000)}
			c.AccountOrder = []string{"b", "a"}
		}, `a|options.listener.port|port 7000 is already used by account "b" (options.listener.port)`},
		{"different hosts", func(c *Config) {
			c.Accounts = map[string]Account{"a": btpServer("127.0.0.1", 7000), "b": btpServer("127.0.0.2", 7000)}
		}, ""},
		{"a wildcard host takes every address", func(c *Config) {
			c.Accounts = map[string]Account{"a": btpServer("0.0.0.0", 7000), "b": btpServer("127.0.0.1", 7000)}
		}, `b|options.listener.port|port 7000`},
		{"wsOpts without a port keeps listener.port", func(c *Config) {
			wsHost := Account{Plugin: PluginBTP, Options: json.RawMessage(`{"listener":{"port":7000,"secret":"s","wsOpts":{"host":"127.0.0.1"}}}`)}
			c.Accounts = map[string]Account{"a": wsHost, "b": wsHost}
		}, `b|options.listener.port|port 7000 is already used by account "a" (options.listener.port)`},
		{"wsOpts.port replaces listener.port", func(c *Config) {
			c.Accounts = map[string]Account{"a": btpServer("", 7000),
				"b": {Plugin: PluginBTP, Options: json.RawMessage(`{"listener":{"port":7001,"secret":"s","wsOpts":{"port":7000}}}`)}}
		}, `b|options.listener.wsOpts.port|port 7000 is already used by account "a" (options.listener.port)`},
		{"mini-accounts' default port", func(c *Config) {
			c.Accounts = map[string]Account{"a": mini(`{}`), "b": btpServer("", 3000)}
		}, `b|options.listener.port|port 3000 is already used by account "a" (options.port, by default)`},
		{"ILP-over-HTTP and BTP", func(c *Config) {
			c.Accounts = map[string]Account{"a": httpIn(7000), "b": mini(`{"port":7000}`)}
		}, `b|options.port|port 7000 is already used by account "a" (options.incoming.port)`},
		{"the admin API's port", func(c *Config) {
			c.AdminAPI, c.AdminAPIHost, c.AdminAPIPort = true, "127.0.0.1", 7000
			c.Accounts = map[string]Account{"a": btpServer("", 7000)}
		}, `a|options.listener.port|port 7000 is already used by adminApiPort`},
		{"the admin API off", func(c *Config) {
			c.AdminAPI, c.AdminAPIPort = false, 7000
			c.Accounts = map[string]Account{"a": btpServer("", 7000)}
		}, ""},
		{"the settlement API's port", func(c *Config) {
			c.SettlementAPIHost, c.SettlementAPIPort = "127.0.0.1", 7000
			c.Accounts = map[string]Account{"a": withEngine(btpServer("", 7000))}
		}, `a|options.listener.port|port 7000 is already used by settlementApiPort`},
		{"an engine that turns the settlement API on over an older account's port", func(c *Config) {
			c.SettlementAPIHost, c.SettlementAPIPort = "0.0.0.0", 7000
			c.Accounts = map[string]Account{"a": btpServer("", 7000), "b": withEngine(client)}
		}, `b|settlementEngine|port 7000 (settlementApiPort, which this account's engine needs) is already used by account "a"`},
		{"every account with an engine needs the settlement API", func(c *Config) {
			c.SettlementAPIHost, c.SettlementAPIPort = "0.0.0.0", 7000
			c.Accounts = map[string]Account{"a": btpServer("", 7000), "b": withEngine(client), "c": withEngine(client)}
		}, `b|settlementEngine|port 7000 (settlementApiPort, which this account's engine needs) is already used by account "a"` +
			"\n" + `c|settlementEngine|port 7000 (settlementApiPort, which this account's engine needs) is already used by account "a"`},
		{"the settlement API unused", func(c *Config) {
			c.SettlementAPIHost, c.SettlementAPIPort = "127.0.0.1", 7000
			c.Accounts = map[string]Account{"a": btpServer("", 7000)}
		}, ""},
		{"admin and settlement APIs on one port", func(c *Config) {
			c.AdminAPI, c.AdminAPIHost, c.AdminAPIPort = true, "127.0.0.1", 7000
			c.SettlementAPIHost, c.SettlementAPIPort = "127.0.0.1", 7000
			c.Accounts = map[string]Account{"a": withEngine(client)}
		}, `a|settlementEngine|port 7000 (settlementApiPort, which this account's engine needs) is already used by adminApiPort`},
		{"clients and free ports do not listen", func(c *Config) {
			c.Accounts = map[string]Account{"a": client, "b": client, "c": btpServer("", 0), "d": btpServer("", 0)}
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Defaults()
			tt.edit(c)
			var l fieldErrors
			c.validateListeners(&l)
			_ = l.join(func(*FieldError) string { return "" }) // as a source does: the exact option path
			var got []string
			for _, e := range l {
				got = append(got, e.Account+"|"+e.Field+"|"+e.Problem)
			}
			var want []string // one error per line, each a prefix
			if tt.want != "" {
				want = strings.Split(tt.want, "\n")
			}
			if len(got) != len(want) {
				t.Fatalf("errors %q, want %d starting %q", got, len(want), want)
			}
			for i := range want {
				if !strings.HasPrefix(got[i], want[i]) {
					t.Errorf("error %q, want one starting %q", got[i], want[i])
				}
			}
		})
	}
}

func TestOverlap(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want bool
	}{
		{"", "127.0.0.1", true},
		{"::", "10.0.0.1", true},
		{"[::]", "::1", true},
		{"::0", "10.0.0.1", true},
		{"[0:0:0:0:0:0:0:0]", "127.0.0.1", true},
		{"0.0.0.0", "::ffff:10.0.0.1", true},
		{"0.0.0.0", "127.0.0.1", true},
		{"0.0.0.0", "::1", false},
		{"0.0.0.0", "my-host", true},
		{"127.0.0.1", "localhost", true},
		{"::ffff:127.0.0.1", "127.0.0.1", true},
		{"127.0.0.1", "127.0.0.2", false},
		{"::1", "127.0.0.1", false},
		{"a.example", "b.example", false},
	} {
		if got := overlap(tt.a, tt.b); got != tt.want {
			t.Errorf("overlap(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
		if got := overlap(tt.b, tt.a); got != tt.want {
			t.Errorf("overlap(%q, %q) = %v, want %v", tt.b, tt.a, got, tt.want)
		}
	}
}

// TestValidateNamesNoOptionPath: Validate alone (the Kubernetes source, whose users did not
// write options) names neither the field nor the other account's port by its option path.
func TestValidateNamesNoOptionPath(t *testing.T) {
	opts := json.RawMessage(`{"listener":{"port":7000,"secret":"s"}}`)
	c := Defaults()
	c.ILPAddress = "test.a"
	c.Accounts = map[string]Account{
		"a": {Relation: RelationChild, Plugin: PluginBTP, AssetCode: "USD", Options: opts},
		"b": {Relation: RelationChild, Plugin: PluginBTP, AssetCode: "USD", Options: opts},
	}
	c.AccountOrder = []string{"a", "b"}
	const want = `account "b": options = 7000: port 7000 is already used by account "a"; give each listener its own port`
	if err := c.Validate(); err == nil || err.Error() != want {
		t.Errorf("Validate() = %v, want %s", err, want)
	}
}
