package connector

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"

	"github.com/ilpfleet/ilpfleet/runtime/btp"
	"github.com/ilpfleet/ilpfleet/runtime/store"
)

// storeTokens is the btp.TokenStore of a mini-accounts account: the auth_username bindings in
// the connector's store, one key per child (childTokenKey) holding base64url(sha256(token)),
// as mini-accounts keeps `<account>:hashed-token` in the JS connector's store. So a binding
// outlives a restart as the child's balance does, and replicas sharing Redis agree on it.
type storeTokens struct {
	kv      store.KV
	account string
}

var _ btp.TokenStore = storeTokens{}

// Claim implements btp.TokenStore. It reads first (a binding is written once and read at
// every first connection after a restart); CreateKey settles a race between two first claims.
func (t storeTokens) Claim(ctx context.Context, username string, sum [32]byte) ([32]byte, error) {
	key := childTokenKey(t.account, username)
	v, err := t.kv.GetKey(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		created, cerr := t.kv.CreateKey(ctx, key, []byte(base64.RawURLEncoding.EncodeToString(sum[:])))
		if cerr != nil || created {
			return sum, cerr
		}
		v, err = t.kv.GetKey(ctx, key) // another claim won
	}
	if err != nil {
		return [32]byte{}, err
	}
	return decodeTokenHash(key, v)
}

// decodeTokenHash reads a stored binding; a damaged one is an error, so the child is refused.
func decodeTokenHash(key string, v []byte) ([32]byte, error) {
	var bound [32]byte
	// The length first: Decode would write past bound for a longer value.
	if len(v) != base64.RawURLEncoding.EncodedLen(len(bound)) {
		return [32]byte{}, fmt.Errorf("stored token hash %s is not base64url of 32 bytes", key)
	}
	if _, err := base64.RawURLEncoding.Decode(bound[:], v); err != nil {
		return [32]byte{}, fmt.Errorf("stored token hash %s: %w", key, err)
	}
	return bound, nil
}

// childTokenKey is the store key of the token hash bound to username on the mini-accounts
// account. Both parts are path-escaped, so neither can reach out of its place in the key.
func childTokenKey(account, username string) string {
	return "btp/child-token/" + url.PathEscape(account) + "/" + url.PathEscape(username)
}
