package btp

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/testlog"
)

// tryAuth connects a child and returns Start's error; it closes the child again.
func tryAuth(t *testing.T, srv *ChildServer, user, token string) error {
	t.Helper()
	c := newClient(t, serverURL(srv, user, token), nil)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.Start(ctx, echo)
}

// wantRefused fails unless err is the F00 refusal of an auth.
func wantRefused(t *testing.T, err error, what string) {
	t.Helper()
	var be *Error
	if !errors.As(err, &be) || be.Code != "F00" {
		t.Errorf("%s: Start = %v; want an F00 refusal", what, err)
	}
}

// withTokens gives the server tokens as its TokenStore.
func withTokens(tokens TokenStore) func(*ChildServerOptions) {
	return func(o *ChildServerOptions) { o.Tokens = tokens }
}

// TestChildTokenBindingSurvivesRestart: a server asks its TokenStore, so a binding made before
// a restart holds after it (the connector's TokenStore is its balance store).
func TestChildTokenBindingSurvivesRestart(t *testing.T) {
	tokens := &memoryTokens{m: map[string][32]byte{}} // outlives both servers, as a store does
	first := startChildServer(t, echo, withTokens(tokens))
	if err := tryAuth(t, first, "bob", "pw"); err != nil {
		t.Fatalf("first claim: %v", err)
	}
	first.Close()

	second := startChildServer(t, echo, withTokens(tokens))
	wantRefused(t, tryAuth(t, second, "bob", "thief"), "another token after the restart")
	if err := tryAuth(t, second, "bob", "pw"); err != nil {
		t.Errorf("the first token after the restart: %v", err)
	}
	if got := tokens.m["bob"]; got != sha256.Sum256([]byte("pw")) {
		t.Errorf("stored binding = %x; want the token's sha256", got)
	}
}

// failingTokens is a TokenStore that cannot answer.
type failingTokens struct{ err error }

func (f failingTokens) Claim(context.Context, string, [32]byte) ([32]byte, error) {
	return [32]byte{}, f.err
}

// TestChildTokenStoreFailureRefuses: a TokenStore that cannot answer refuses the child (fail
// closed: without the binding any token could take the account) and says why in the log.
func TestChildTokenStoreFailureRefuses(t *testing.T) {
	var logs testlog.Buffer
	srv := startChildServer(t, echo, func(o *ChildServerOptions) {
		o.Tokens = failingTokens{errors.New("store down")}
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	wantRefused(t, tryAuth(t, srv, "bob", "pw"), "auth")
	if !strings.Contains(logs.String(), "refusing the child") || !strings.Contains(logs.String(), "store down") {
		t.Errorf("log = %q; want the store failure logged", logs.String())
	}
	if err := tryAuth(t, srv, "", "pw"); err != nil {
		t.Errorf("a hashed-token child, which needs no binding: %v", err)
	}
}

// TestChildTokenHashedNames: a username shaped like a hashed token cannot take the account of
// the child that connected with that token and no username.
func TestChildTokenHashedNames(t *testing.T) {
	srv := startChildServer(t, echo, nil)
	victim := TokenAccount([]byte("victim"))
	if err := tryAuth(t, srv, "", "victim"); err != nil {
		t.Fatalf("hashed child: %v", err)
	}
	wantRefused(t, tryAuth(t, srv, victim, "thief"), "the victim's hash as username")
	if err := tryAuth(t, srv, victim, "victim"); err != nil {
		t.Errorf("the victim with its own hash as username: %v", err)
	}
	gen := false // generateAccount false (a reload after the victim connected): still protected
	strict := startChildServer(t, echo, func(o *ChildServerOptions) { o.GenerateAccount = &gen })
	wantRefused(t, tryAuth(t, strict, victim, "thief"), "the victim's hash as username, generateAccount false")
	if err := tryAuth(t, strict, victim, "victim"); err != nil {
		t.Errorf("the victim with its own hash as username, generateAccount false: %v", err)
	}
	if got, want := looksHashed(victim), true; got != want {
		t.Errorf("looksHashed(%q) = %v", victim, got)
	}
	if looksHashed("bob") || looksHashed(strings.Repeat("!", 43)) {
		t.Error("looksHashed accepts a name that no token hashes to")
	}
}
