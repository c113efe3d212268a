package rates

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/shopspring/decimal"
)

// Backend names.
const (
	NameOneToOne = "one-to-one"
	NameStatic   = "static"
)

// jsDivisionPlaces is bignumber.js's default DECIMAL_PLACES, the precision of the JS division.
const jsDivisionPlaces = 20

// jsSignificantDigits is the toPrecision(15) the JS backends round their rate to.
const jsSignificantDigits = 15

var one = decimal.NewFromInt(1)

// roundSignificant rounds d half away from zero (bignumber.js ROUND_HALF_UP) to n significant
// digits, as toPrecision(n).
func roundSignificant(d decimal.Decimal, n int32) decimal.Decimal {
	if d.IsZero() {
		return d
	}
	// d = coefficient·10^exp; its leading digit is at 10^(digits+exp−1).
	lead := int32(d.NumDigits()) + d.Exponent()
	return d.Round(n - lead)
}

// New returns the backend named name, configured by config (CONNECTOR_BACKEND_CONFIG; empty,
// null and {} mean no configuration).
func New(name string, config json.RawMessage) (Backend, error) {
	switch name {
	case NameOneToOne:
		if err := checkObject(config); err != nil {
			return nil, fmt.Errorf("backendConfig for %s: %w", name, err)
		}
		return OneToOne{}, nil
	case NameStatic:
		return NewStatic(config)
	case NameECB:
		b, err := NewECB(config)
		if err != nil {
			return nil, err
		}
		return b, nil
	case "ecb-plus-xrp", "ecb-plus-coinmarketcap", "fixerio", "fixerio-plus-xrp", "fixerio-plus-coinmarketcap":
		return nil, fmt.Errorf("backend %q fetches prices from a public API other than the ECB's (Ripple Data, CoinMarketCap, fixer.io), which this runtime does not call; use %q for the ECB's currencies, or %q with backendConfig {\"base\":\"EUR\",\"rates\":{\"USD\":\"1.08\",\"XRP\":\"2.1\",…}} for any asset",
			name, NameECB, NameStatic)
	}
	return nil, fmt.Errorf("unknown backend %q; the backends are: %s", name, strings.Join(Names(), ", "))
}

// Prefetch has a backend that fetches its rates (ecb) start now, when it is put in force, so
// that the first packets do not wait for the first fetch.
func Prefetch(b Backend) {
	if p, ok := b.(interface{ Prefetch() }); ok {
		p.Prefetch()
	}
}

// Close stops what a backend runs in the background (the ecb backend's fetch), when it is
// replaced or the connector closes; the other backends run nothing.
func Close(b Backend) error {
	if c, ok := b.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// Check reports what New refuses in a backend's config: config validation calls it, so that
// every source (env, file, Kubernetes) refuses a config whose backend could not be built.
func Check(name string, config json.RawMessage) error {
	b, err := New(name, config)
	if err != nil {
		return err
	}
	return Close(b) // New does no I/O and starts nothing; Close releases what it holds
}

// Names lists the backends New knows.
func Names() []string { return []string{NameOneToOne, NameStatic, NameECB} }

func checkObject(config json.RawMessage) error {
	t := bytes.TrimSpace(config)
	if len(t) == 0 || bytes.Equal(t, []byte("null")) {
		return nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(t, &m); err != nil {
		return fmt.Errorf("not a JSON object: %w", err)
	}
	return nil
}

// OneToOne is the JS one-to-one backend: a rate of 1 between any two assets, with the asset
// scales and the spread applied. It needs no configuration and knows every asset.
type OneToOne struct{}

// Name is "one-to-one".
func (OneToOne) Name() string { return NameOneToOne }

// Rate is 1 for any pair.
func (OneToOne) Rate(string, string) (decimal.Decimal, error) { return one, nil }

// ScaledRate is toPrecision15((1 − spread)·10^(dst.Scale − src.Scale)), as JS.
func (OneToOne) ScaledRate(src, dst Asset, spread decimal.Decimal) (decimal.Decimal, error) {
	r := one.Sub(spread).Shift(int32(dst.Scale) - int32(src.Scale))
	return roundSignificant(r, jsSignificantDigits), nil
}

// Immutable is true: the one-to-one rates never change.
func (OneToOne) Immutable() bool { return true }

// Static is a fixed table of prices in the ECB's shape: for each asset code, how many units of
// it one unit of the base is worth ({"base":"EUR","rates":{"USD":"1.08","JPY":"162.5"}} means
// 1 EUR = 1.08 USD = 162.5 JPY). The base, when named, has the price 1.
type Static struct {
	name   string // the backend whose table this is: "static", or "ecb" for its fetched table
	base   string
	prices map[string]decimal.Decimal
	codes  []string // sorted, for error messages
}

// staticConfig is CONNECTOR_BACKEND_CONFIG for the static backend. Prices are JSON numbers or
// decimal strings; both are parsed as exact decimals, never through float64.
type staticConfig struct {
	Base  string                     `json:"base"`
	Rates map[string]json.RawMessage `json:"rates"`
}

// NewStatic parses a static backend's configuration.
func NewStatic(config json.RawMessage) (*Static, error) {
	var c staticConfig
	dec := json.NewDecoder(bytes.NewReader(config))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf(`backendConfig for static: want {"base":"EUR","rates":{"USD":"1.08",…}}: %w`, err)
	}
	if len(c.Rates) == 0 {
		return nil, errors.New(`backendConfig for static: "rates" is empty; give the price of every asset the accounts use, e.g. {"base":"EUR","rates":{"USD":"1.08"}}`)
	}
	s := &Static{name: NameStatic, base: c.Base, prices: make(map[string]decimal.Decimal, len(c.Rates)+1)}
	var errs []error
	for code, raw := range c.Rates {
		p, err := parsePrice(raw)
		if err == nil && code == "" {
			err = errors.New("empty asset code")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("backendConfig for static: rates[%q]: %w", code, err))
			continue
		}
		s.prices[code] = p
	}
	if c.Base != "" {
		s.prices[c.Base] = one // as the JS ecb backend: the base is worth 1 of itself
	}
	if len(errs) > 0 {
		sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
		return nil, errors.Join(errs...)
	}
	s.sortCodes()
	return s, nil
}

// sortCodes lists the asset codes of the table, sorted, for error messages.
func (s *Static) sortCodes() {
	s.codes = make([]string, 0, len(s.prices))
	for code := range s.prices {
		s.codes = append(s.codes, code)
	}
	sort.Strings(s.codes)
}

// parsePrice reads a JSON number or a string holding a decimal, and requires it to be > 0.
func parsePrice(raw json.RawMessage) (decimal.Decimal, error) {
	t := bytes.TrimSpace(raw)
	var text string
	if len(t) > 0 && t[0] == '"' {
		if err := json.Unmarshal(t, &text); err != nil {
			return decimal.Decimal{}, err
		}
	} else {
		var n json.Number
		if err := json.Unmarshal(t, &n); err != nil {
			return decimal.Decimal{}, fmt.Errorf("want a number or a decimal string, got %s", t)
		}
		text = n.String()
	}
	p, err := decimal.NewFromString(text)
	if err != nil {
		return decimal.Decimal{}, fmt.Errorf("%q is not a decimal number", text)
	}
	if p.Sign() <= 0 {
		return decimal.Decimal{}, fmt.Errorf("price %s must be greater than zero", p)
	}
	return p, nil
}

// Name is "static".
func (s *Static) Name() string { return NameStatic }

// Immutable is true: the table is fixed at construction; a new config builds a new backend.
func (s *Static) Immutable() bool { return true }

func (s *Static) price(code string) (decimal.Decimal, error) {
	p, ok := s.prices[code]
	if !ok {
		return decimal.Decimal{}, &UnknownAssetError{Backend: s.name, Code: code, Known: s.codes}
	}
	return p, nil
}

// Rate is price(dest)/price(source), to 20 decimal places.
func (s *Static) Rate(sourceAsset, destAsset string) (decimal.Decimal, error) {
	sp, err := s.price(sourceAsset)
	if err != nil {
		return decimal.Decimal{}, err
	}
	dp, err := s.price(destAsset)
	if err != nil {
		return decimal.Decimal{}, err
	}
	return dp.DivRound(sp, jsDivisionPlaces), nil
}

// ScaledRate is the JS ecb backend's formula:
// toPrecision15(dstPrice·10^dstScale / (srcPrice·10^srcScale) × (1 − spread)), the division
// to 20 decimal places, half-up.
func (s *Static) ScaledRate(src, dst Asset, spread decimal.Decimal) (decimal.Decimal, error) {
	sp, err := s.price(src.Code)
	if err != nil {
		return decimal.Decimal{}, err
	}
	dp, err := s.price(dst.Code)
	if err != nil {
		return decimal.Decimal{}, err
	}
	q := dp.Shift(int32(dst.Scale)).DivRound(sp.Shift(int32(src.Scale)), jsDivisionPlaces)
	return roundSignificant(q.Mul(one.Sub(spread)), jsSignificantDigits), nil
}
