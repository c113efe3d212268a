// Package settlement is RFC 38 on the connector's side: the client a connector uses to reach
// its settlement engines, the accounting-system API the engines call back, and the settler
// that records a due settlement durably before it asks the engine. The framework for writing
// engines is in the engine subpackage; both speak in Quantity.
package settlement

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/shopspring/decimal"
)

// Quantity is RFC 38's amount of one asset: Amount units of 10^-Scale of its standard unit,
// Amount a non-negative integer written as a decimal string so that no precision is lost.
type Quantity struct {
	Amount string `json:"amount"`
	Scale  uint8  `json:"scale"`
}

// NewQuantity is amount units at scale.
func NewQuantity(amount uint64, scale uint8) Quantity {
	return Quantity{Amount: decimal.NewFromUint64(amount).String(), Scale: scale}
}

// UnmarshalJSON reads a Quantity strictly: both fields present, the amount a string of digits
// (no sign, point or exponent), the scale 0–255. Read leniently, a Quantity without its scale
// would count the amount in whole units — 10^scale times what was meant. The keys must be
// spelt exactly "amount" and "scale": encoding/json would also take "Amount" or "SCALE", and
// a body carrying both spellings would then be read with a different amount or scale than an
// engine that follows RFC 38 meant.
func (q *Quantity) UnmarshalJSON(b []byte) error {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return fmt.Errorf("quantity: %w", err)
	}
	var amount *string
	var scale *int
	if err := field(obj, "amount", &amount); err != nil {
		return err
	}
	if err := field(obj, "scale", &scale); err != nil {
		return err
	}
	switch {
	case amount == nil:
		return errors.New(`quantity: "amount" is missing`)
	case scale == nil:
		return errors.New(`quantity: "scale" is missing (without it the amount would be read in whole units)`)
	case *scale < 0 || *scale > math.MaxUint8:
		return fmt.Errorf("quantity: scale %d: want 0 to 255", *scale)
	case !isDigits(*amount):
		return fmt.Errorf("quantity: amount %q: want a non-negative integer written with digits only", *amount)
	}
	*q = Quantity{Amount: *amount, Scale: uint8(*scale)}
	return nil
}

// field decodes the value of the exactly-named key into dst, leaving dst nil when the key is
// absent or null.
func field[T any](obj map[string]json.RawMessage, key string, dst **T) error {
	raw, ok := obj[key]
	if !ok {
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return fmt.Errorf("quantity: %q: %w", key, err)
	}
	return nil
}

func isDigits(s string) bool {
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// Units returns the amount as an integer number of units of 10^-Scale.
func (q Quantity) Units() (decimal.Decimal, error) {
	if !isDigits(q.Amount) {
		return decimal.Decimal{}, fmt.Errorf("quantity amount %q: not a non-negative integer written with digits only", q.Amount)
	}
	return decimal.RequireFromString(q.Amount), nil
}

// Standard returns the amount in standard units of the asset (e.g. 2.54 for 254 at scale 2).
func (q Quantity) Standard() (decimal.Decimal, error) {
	u, err := q.Units()
	if err != nil {
		return decimal.Decimal{}, err
	}
	return u.Shift(-int32(q.Scale)), nil
}

// ErrTooLarge is returned when an amount does not fit the int64 balances of the connector.
var ErrTooLarge = errors.New("settlement: amount exceeds the connector's balance range (int64)")

// ToScale expresses a standard-unit amount (≥ 0) in whole units of scale, rounded down, and
// returns the part that did not fit in a unit, again in standard units: the leftover RFC 38
// asks to keep until it adds up to a unit.
func ToScale(standard decimal.Decimal, scale uint8) (units int64, leftover decimal.Decimal, err error) {
	if standard.Sign() < 0 {
		return 0, decimal.Decimal{}, fmt.Errorf("settlement: negative amount %s", standard)
	}
	whole := standard.Shift(int32(scale)).Floor()
	if whole.GreaterThan(decimal.NewFromInt(math.MaxInt64)) {
		return 0, decimal.Decimal{}, ErrTooLarge
	}
	return whole.IntPart(), standard.Sub(whole.Shift(-int32(scale))), nil
}
