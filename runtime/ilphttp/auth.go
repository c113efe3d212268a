package ilphttp

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"time"
)

// jwtHeader is the header jsonwebtoken writes for HS256; the only algorithm accepted.
const jwtHeader = `{"alg":"HS256","typ":"JWT"}`

var b64 = base64.RawURLEncoding

// verifier checks the Authorization header of incoming requests.
type verifier struct {
	tokenHash [sha256.Size]byte // sha256 of the static token, so the comparison does not leak its length
	hasToken  bool
	jwtKey    []byte
	now       func() time.Time
}

func newVerifier(a Auth, now func() time.Time) *verifier {
	v := &verifier{now: now}
	if a.Token != "" {
		v.tokenHash, v.hasToken = sha256.Sum256([]byte(a.Token)), true
	}
	if a.JWTSecret != "" {
		v.jwtKey = []byte(a.JWTSecret)
	}
	return v
}

// verify accepts "Bearer <token>" or a bare token (what ilp-plugin-http sends with its legacy
// options), like the JS plugin.
func (v *verifier) verify(header string) bool {
	tok := header
	if len(tok) > 7 && strings.EqualFold(tok[:7], "bearer ") {
		tok = tok[7:]
	}
	if tok == "" {
		return false
	}
	if v.hasToken {
		h := sha256.Sum256([]byte(tok))
		if subtle.ConstantTimeCompare(h[:], v.tokenHash[:]) == 1 {
			return true
		}
	}
	return v.jwtKey != nil && verifyJWT(v.jwtKey, tok, v.now())
}

// verifyJWT checks an HS256 token's signature (in constant time) and its exp and nbf claims.
func verifyJWT(key []byte, tok string, now time.Time) bool {
	h, rest, ok := strings.Cut(tok, ".")
	if !ok {
		return false
	}
	payload, sig, ok := strings.Cut(rest, ".")
	if !ok {
		return false
	}
	hdr, err := b64.DecodeString(h)
	if err != nil {
		return false
	}
	var head struct {
		Alg string `json:"alg"`
	}
	if json.Unmarshal(hdr, &head) != nil || head.Alg != "HS256" {
		return false
	}
	got, err := b64.DecodeString(sig)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(tok[:len(h)+1+len(payload)]))
	if !hmac.Equal(got, mac.Sum(nil)) {
		return false
	}
	body, err := b64.DecodeString(payload)
	if err != nil {
		return false
	}
	var claims struct {
		Exp *float64 `json:"exp"`
		Nbf *float64 `json:"nbf"`
	}
	if json.Unmarshal(body, &claims) != nil {
		return false
	}
	sec := float64(now.Unix())
	// jsonwebtoken: expired when now >= exp; not yet valid when now < nbf.
	return (claims.Exp == nil || sec < *claims.Exp) && (claims.Nbf == nil || sec >= *claims.Nbf)
}

// signJWT makes the token jsonwebtoken's sign({}, secret, {expiresIn}) makes: iat and exp.
func signJWT(key []byte, now time.Time, ttl time.Duration) string {
	iat := now.Unix()
	payload := `{"iat":` + strconv.FormatInt(iat, 10) + `,"exp":` + strconv.FormatInt(iat+int64(ttl/time.Second), 10) + `}`
	s := b64.EncodeToString([]byte(jwtHeader)) + "." + b64.EncodeToString([]byte(payload))
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(s))
	return s + "." + b64.EncodeToString(mac.Sum(nil))
}

// signer makes the Authorization header of outgoing requests. A static token's header is built
// once; a JWT is re-signed when half its lifetime has passed, as ilp-plugin-http does.
type signer struct {
	static string // the whole header value, when a static token is used
	key    []byte
	ttl    time.Duration
	prefix string
	now    func() time.Time

	mu      sync.Mutex
	header  string
	renewAt time.Time
}

func newSigner(o *OutgoingOptions, now func() time.Time) *signer {
	s := &signer{prefix: "Bearer ", now: now}
	if o.RawAuthorization {
		s.prefix = ""
	}
	if o.Auth.JWTSecret != "" { // the JS plugin prefers the JWT when both are set
		s.key, s.ttl = []byte(o.Auth.JWTSecret), o.JWTExpiry
		if s.ttl <= 0 {
			s.ttl = DefaultJWTExpiry
		}
		return s
	}
	s.static = s.prefix + o.Auth.Token
	return s
}

func (s *signer) authorization() string {
	if s.key == nil {
		return s.static
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.header == "" || !now.Before(s.renewAt) {
		s.header = s.prefix + signJWT(s.key, now, s.ttl)
		s.renewAt = now.Add(s.ttl / 2)
	}
	return s.header
}
