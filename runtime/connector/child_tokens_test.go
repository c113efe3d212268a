package connector

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/btp"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/store"
)

const childTokensConfig = `
ilpAddress: test.a
accounts:
  kids:
    relation: child
    plugin: ilp-plugin-mini-accounts
    assetCode: USD
    assetScale: 2
    options: {wsOpts: {host: 127.0.0.1, port: %PK%}}
`

// authChild connects a child with auth_username user and returns Start's error.
func authChild(t *testing.T, port int, user, token string) error {
	t.Helper()
	cl, err := btp.NewClient(btp.ClientOptions{Server: "btp+ws://" + user + ":" + token + "@127.0.0.1:" + itoa(port),
		Common: btp.Common{Logger: slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return cl.Start(ctx, func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) {
		return nil, errors.New("this child takes no payments")
	})
}

// runOnFileStore runs a connector with the child account on the file store in dir, calls f
// with the account's port, then closes the connector and the store: one life of the process.
func runOnFileStore(t *testing.T, dir string, f func(port int)) {
	t.Helper()
	st, err := store.OpenFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	port := freePort(t)
	c := start(t, strings.ReplaceAll(childTokensConfig, "%PK%", itoa(port)), Options{Store: st})
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	}()
	f(port)
}

// TestChildTokenSurvivesRestart: after a restart on the same file store, the token bound to a
// child's auth_username is still the only one accepted for it (no account takeover).
func TestChildTokenSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	runOnFileStore(t, dir, func(port int) {
		if err := authChild(t, port, "bob", "tok-bob"); err != nil {
			t.Fatalf("bob's first connection: %v", err)
		}
	})
	runOnFileStore(t, dir, func(port int) {
		var be *btp.Error
		if err := authChild(t, port, "bob", "tok-thief"); !errors.As(err, &be) || be.Code != "F00" {
			t.Errorf("another token for bob after the restart: Start = %v; want an F00 refusal", err)
		}
		if err := authChild(t, port, "bob", "tok-bob"); err != nil {
			t.Errorf("bob's own token after the restart: %v", err)
		}
	})
}

// TestStoreTokensAccountsDoNotShareNames: the same auth_username on two mini-accounts
// accounts is two children, each bound to its own token.
func TestStoreTokensAccountsDoNotShareNames(t *testing.T) {
	st := store.NewMemory()
	ctx := context.Background()
	kids, other := storeTokens{kv: st, account: "kids"}, storeTokens{kv: st, account: "other"}
	one, two := sha256.Sum256([]byte("pw1")), sha256.Sum256([]byte("pw2"))
	if b, err := kids.Claim(ctx, "bob", one); err != nil || b != one {
		t.Fatalf("bob on kids: %x %v", b, err)
	}
	if b, err := other.Claim(ctx, "bob", two); err != nil || b != two {
		t.Fatalf("bob on other, with another token: %x %v", b, err)
	}
	if b, err := kids.Claim(ctx, "bob", two); err != nil || b != one {
		t.Fatalf("a second claim of bob on kids: %x %v; want the first binding", b, err)
	}
	v, err := st.GetKey(ctx, childTokenKey("kids", "bob"))
	if want := btp.TokenAccount([]byte("pw1")); err != nil || string(v) != want {
		t.Errorf("stored binding = %q, %v; want the token's hash %q, as mini-accounts stores it", v, err, want)
	}
}

// TestStoreTokensClaimRace: of first claims racing for one name, exactly one wins and all see it.
func TestStoreTokensClaimRace(t *testing.T) {
	tokens := storeTokens{kv: store.NewMemory(), account: "kids"}
	const n = 8
	bound := make([][32]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			b, err := tokens.Claim(context.Background(), "bob", sha256.Sum256([]byte{byte(i)}))
			if err != nil {
				t.Error(err)
			}
			bound[i] = b
		})
	}
	wg.Wait()
	winners := 0
	for i := range n {
		if bound[i] != bound[0] {
			t.Fatalf("claim %d sees %x, claim 0 sees %x: two bindings", i, bound[i], bound[0])
		}
		if bound[i] == sha256.Sum256([]byte{byte(i)}) {
			winners++
		}
	}
	if winners != 1 {
		t.Errorf("%d claims won, want 1", winners)
	}
}

// brokenKV is a store KV that fails, or holds a damaged binding.
type brokenKV struct {
	store.KV
	getErr    error
	value     []byte // GetKey's answer when getErr is nil
	createErr error
}

func (f brokenKV) GetKey(context.Context, string) ([]byte, error) { return f.value, f.getErr }
func (f brokenKV) CreateKey(context.Context, string, []byte) (bool, error) {
	return false, f.createErr
}

// TestStoreTokensFailures: every way the store can fail to give a binding is an error, which
// the child server turns into a refusal.
func TestStoreTokensFailures(t *testing.T) {
	down := errors.New("store down")
	for _, tt := range []struct {
		name string
		kv   brokenKV
	}{
		{"read fails", brokenKV{getErr: down}},
		{"write fails", brokenKV{getErr: store.ErrNotFound, createErr: down}},
		{"binding lost between write and read", brokenKV{getErr: store.ErrNotFound}},
		{"damaged binding", brokenKV{value: []byte("not a hash")}},
		{"binding too long", brokenKV{value: []byte(strings.Repeat("A", 60))}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tokens := storeTokens{kv: tt.kv, account: "kids"}
			if b, err := tokens.Claim(context.Background(), "bob", sha256.Sum256([]byte("pw"))); err == nil {
				t.Errorf("Claim = %x, nil; want an error", b)
			}
		})
	}
}

func TestChildTokenKey(t *testing.T) {
	tests := []struct{ account, user, want string }{
		{"kids", "bob", "btp/child-token/kids/bob"},
		{"a.b", "c-d_~", "btp/child-token/a.b/c-d_~"},
		{"a/b", "c", "btp/child-token/a%2Fb/c"},
		{"a", "b/c", "btp/child-token/a/b%2Fc"},
		{"a", "%2F", "btp/child-token/a/%252F"},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		got := childTokenKey(tt.account, tt.user)
		if got != tt.want {
			t.Errorf("childTokenKey(%q, %q) = %q, want %q", tt.account, tt.user, got, tt.want)
		}
		if seen[got] {
			t.Errorf("childTokenKey(%q, %q) = %q collides", tt.account, tt.user, got)
		}
		seen[got] = true
	}
}
