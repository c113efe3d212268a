package ilp

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidAddress is matched (errors.Is) by every *AddressError.
var ErrInvalidAddress = errors.New("ilp: invalid address")

// AddressError explains why an address is not a valid RFC 15 ILP address.
type AddressError struct {
	Address string // the address as given (possibly very long; Error() shortens it)
	Reason  string
}

func (e *AddressError) Error() string {
	return fmt.Sprintf("ilp: invalid address %s: %s", quoteShort(e.Address), e.Reason)
}

// Is makes errors.Is(err, ErrInvalidAddress) true.
func (e *AddressError) Is(target error) bool { return target == ErrInvalidAddress }

// quoteShort quotes s for an error message, cut to a readable size.
func quoteShort(s string) string {
	const limit = 80
	if len(s) <= limit {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q… (%d bytes)", s[:limit], len(s))
}

// quoteByte shows c as a quoted ASCII character, or in hex when it is not ASCII (part of a
// UTF-8 sequence, which would print as a misleading character on its own).
func quoteByte(c byte) string {
	if c < 0x80 {
		return fmt.Sprintf("%q", rune(c))
	}
	return fmt.Sprintf("0x%02x", c)
}

// segmentChar marks the bytes allowed in an address segment: A-Z a-z 0-9 _ ~ -.
var segmentChar = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	t['_'], t['~'], t['-'] = true, true, true
	return t
}()

// validScheme reports whether s is one of the RFC 15 allocation schemes.
func validScheme(s string) bool {
	switch s {
	case "g", "private", "example", "peer", "self", "local":
		return true
	}
	return IsTestScheme(s)
}

// IsTestScheme reports whether s is one of the RFC 15 test network schemes: test, test1, test2
// and test3.
func IsTestScheme(s string) bool {
	switch s {
	case "test", "test1", "test2", "test3":
		return true
	}
	return false
}

// ValidateAddress checks s against RFC 15: a known scheme, then one or more "."-separated
// segments of A-Z a-z 0-9 _ ~ -, at most 1023 bytes in all. It is the hand-written equivalent
// of ^(g|private|example|peer|self|test[1-3]?|local)([.][a-zA-Z0-9_~-]+)+$ and allocates only
// when it fails.
func ValidateAddress(s string) error {
	switch {
	case s == "":
		return &AddressError{s, "address is empty"}
	case len(s) > MaxAddressSize:
		return &AddressError{s, fmt.Sprintf("address is %d bytes, more than the maximum of %d", len(s), MaxAddressSize)}
	}
	dot := strings.IndexByte(s, '.')
	scheme := s
	if dot >= 0 {
		scheme = s[:dot]
	}
	if !validScheme(scheme) {
		return &AddressError{s, fmt.Sprintf("unknown scheme %s (want g, private, example, peer, self, test, test1, test2, test3 or local)", quoteShort(scheme))}
	}
	if dot < 0 {
		return &AddressError{s, "address has a scheme but no segment after it"}
	}
	return validateSegments(s, dot)
}

// validateSegments checks s from the dot after the scheme to the end.
func validateSegments(s string, dot int) error {
	segLen := 0
	for i := dot + 1; i < len(s); i++ {
		c := s[i]
		if c == '.' {
			if segLen == 0 {
				return &AddressError{s, fmt.Sprintf("empty segment before byte %d", i)}
			}
			segLen = 0
			continue
		}
		if !segmentChar[c] {
			return &AddressError{s, fmt.Sprintf("invalid character %s at byte %d (allowed: A-Z a-z 0-9 _ ~ - and . between segments)", quoteByte(c), i)}
		}
		segLen++
	}
	if segLen == 0 {
		return &AddressError{s, "address ends with an empty segment"}
	}
	return nil
}

// Validate is ValidateAddress(string(a)).
func (a Address) Validate() error { return ValidateAddress(string(a)) }

// Scheme is the first segment of a: "g" for "g.us.bob", or all of a if it has no ".".
func (a Address) Scheme() string {
	scheme, _, _ := strings.Cut(string(a), ".")
	return scheme
}

// HasPrefix reports whether prefix is a segment-wise prefix of a: "g.alice" prefixes "g.alice"
// and "g.alice.x" but not "g.alice2". The empty prefix matches every address (a catch-all
// route), and a prefix that itself ends with "." matches byte-wise ("g." prefixes "g.alice").
func (a Address) HasPrefix(prefix Address) bool {
	if !strings.HasPrefix(string(a), string(prefix)) {
		return false
	}
	n := len(prefix)
	return n == 0 || n == len(a) || a[n] == '.' || prefix[n-1] == '.'
}

// Network environments of RFC 34, with the names the JS connector uses for CONNECTOR_ENV.
const (
	EnvTest       = "test"
	EnvProduction = "production"
)

// CheckNetwork enforces RFC 34 "test and live networks never mix": on the "test" network it
// refuses g.* addresses, on "production" it refuses test, test1, test2 and test3 addresses.
// Other schemes (private, example, peer, self, local) are allowed on both. An unknown env is an
// error, so a typo in the configuration cannot switch the check off.
func CheckNetwork(a Address, env string) error {
	scheme := a.Scheme()
	switch env {
	case EnvTest:
		if scheme == "g" {
			return &AddressError{string(a), "a g. (live network) address is not allowed on the test network"}
		}
	case EnvProduction:
		if IsTestScheme(scheme) {
			return &AddressError{string(a), "a " + scheme + ". (test network) address is not allowed on the production network"}
		}
	default:
		return fmt.Errorf("ilp: unknown network environment %q (want %q or %q)", env, EnvTest, EnvProduction)
	}
	return nil
}
