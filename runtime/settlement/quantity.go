// Package settlement is RFC 38 on the connector's side: the client a connector uses to reach
// its settlement engines, the accounting-system API the engines call back, and the settler
// that records a due settlement durably before it asks the engine. The framework for writing
// engines is in the engine subpackage; both speak in Quantity.
package settlement

import (
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

// Units returns the amount as an integer number of units of 10^-Scale.
func (q Quantity) Units() (decimal.Decimal, error) {
	d, err := decimal.NewFromString(q.Amount)
	switch {
	case err != nil || q.Amount == "" || q.Amount[0] == '+':
		return decimal.Decimal{}, fmt.Errorf("quantity amount %q: not a non-negative integer", q.Amount)
	case d.Sign() < 0 || !d.IsInteger() || q.Amount[0] == '-':
		return decimal.Decimal{}, fmt.Errorf("quantity amount %q: not a non-negative integer", q.Amount)
	}
	return d, nil
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
