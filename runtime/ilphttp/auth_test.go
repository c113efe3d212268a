package ilphttp

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"hash"
	"strings"
	"testing"
	"time"
)

func TestVerifyJWT(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	key := []byte("shhh")
	good := signJWT(key, now, 30*time.Second)
	parts := strings.Split(good, ".")
	// Tokens whose signature is valid for their header and payload: only the alg check can
	// refuse them. The HS256 one shows the construction is otherwise accepted.
	payload := `{"iat":1700000000,"exp":1700000030}`
	asHS256 := signedAs(key, `{"alg":"HS256","typ":"JWT"}`, payload, sha256.New)
	hs384 := signedAs(key, `{"alg":"HS384","typ":"JWT"}`, payload, sha512.New384)
	noneHS256 := signedAs(key, `{"alg":"none","typ":"JWT"}`, payload, sha256.New)
	hs512HS256 := signedAs(key, `{"alg":"HS512","typ":"JWT"}`, payload, sha256.New)
	noAlg := signedAs(key, `{"typ":"JWT"}`, payload, sha256.New)
	tests := []struct {
		name string
		tok  string
		at   time.Time
		ok   bool
	}{
		{"fresh", good, now, true},
		{"just before exp", good, now.Add(29 * time.Second), true},
		{"at exp", good, now.Add(30 * time.Second), false},
		{"wrong key", signJWT([]byte("other"), now, 30*time.Second), now, false},
		{"construction with alg HS256", asHS256, now, true},
		{"alg HS384 with a valid HS384 signature", hs384, now, false},
		{"alg none with a valid HS256 signature", noneHS256, now, false},
		{"alg HS512 with a valid HS256 signature", hs512HS256, now, false},
		{"no alg with a valid HS256 signature", noAlg, now, false},
		{"tampered payload", parts[0] + "." + b64.EncodeToString([]byte(`{"iat":1,"exp":9999999999}`)) + "." + parts[2], now, false},
		{"two parts", parts[0] + "." + parts[1], now, false},
		{"garbage", "a.b.c", now, false},
		{"no exp", signed(key, `{"iat":1}`), now, true},
		{"nbf in the future", signed(key, `{"nbf":1700000100}`), now, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := verifyJWT(key, tc.tok, tc.at); got != tc.ok {
				t.Fatalf("verifyJWT = %v, want %v", got, tc.ok)
			}
		})
	}
}

// signedAs makes a token with the given header, signed with HMAC over hash.
func signedAs(key []byte, header, payload string, h func() hash.Hash) string {
	s := b64.EncodeToString([]byte(header)) + "." + b64.EncodeToString([]byte(payload))
	mac := hmac.New(h, key)
	mac.Write([]byte(s))
	return s + "." + b64.EncodeToString(mac.Sum(nil))
}

func signed(key []byte, payload string) string {
	s := b64.EncodeToString([]byte(jwtHeader)) + "." + b64.EncodeToString([]byte(payload))
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(s))
	return s + "." + b64.EncodeToString(mac.Sum(nil))
}

func TestSignerRenewsJWT(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	s := newSigner(&OutgoingOptions{Auth: Auth{JWTSecret: "k"}, JWTExpiry: 10 * time.Second}, clock)
	first := s.authorization()
	if !strings.HasPrefix(first, "Bearer ") || !verifyJWT([]byte("k"), first[7:], now) {
		t.Fatalf("header %q is not a valid bearer JWT", first)
	}
	now = now.Add(4 * time.Second)
	if s.authorization() != first {
		t.Fatal("token re-signed before half its lifetime")
	}
	now = now.Add(2 * time.Second)
	second := s.authorization()
	if second == first || !verifyJWT([]byte("k"), second[7:], now.Add(9*time.Second)) {
		t.Fatal("token not re-signed after half its lifetime")
	}
}

func TestVerifierBothMethods(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	v := newVerifier(Auth{Token: "static", JWTSecret: "k"}, func() time.Time { return now })
	for _, tc := range []struct {
		header string
		ok     bool
	}{
		{"Bearer static", true},
		{"static", true},
		{"Bearer " + signJWT([]byte("k"), now, time.Minute), true},
		{"Bearer " + signJWT([]byte("x"), now, time.Minute), false},
		{"Basic c3RhdGljOg==", false},
		{"", false},
	} {
		if got := v.verify(tc.header); got != tc.ok {
			t.Errorf("verify(%q) = %v, want %v", tc.header, got, tc.ok)
		}
	}
}
