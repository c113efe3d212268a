// Package rates holds the exchange-rate backends of the connector (CONNECTOR_BACKEND) and the
// conversion of packet amounts between accounts, done exactly as the JS ilp-connector does it
// and never with floats.
//
// The JS connector converts in two steps. Its backend's getRate(source, destination) returns
// one number: the rate in base units, scales and spread applied,
//
//	rate = toPrecision15( dstPrice·10^dstScale / (srcPrice·10^srcScale) × (1 − spread) )
//
// (one-to-one: toPrecision15((1 − spread)·10^(dstScale−srcScale))), where the division keeps
// 20 decimal places and both roundings are half-up (bignumber.js defaults). The route builder
// then forwards floor(amount × rate). Backend.ScaledRate is the first step and Convert the
// second, so amounts match the JS connector to the unit, including the precision lost in the
// 15-digit rounding (for example 10^12 at a rate of 9240740.7407407407… forwards
// 9240740740740740000, not …740).
//
// Differences from the JS connector, on purpose:
//   - An amount that does not fit in a uint64 after conversion is an *OverflowError, which the
//     connector should send as F08 Amount Too Large with data (received = the source amount,
//     maximum = OverflowError.MaxAmount), so a STREAM sender shrinks its packets. JS multiplies
//     with unbounded BigNumbers and, as far as its source shows, fails only when the oversized
//     outgoing Prepare is serialized, with an error that has no ILP code and so becomes F00 in
//     its errorHandler; interledger-rs sends F08 without data.
//   - An asset without a rate is an *UnknownAssetError, for which Code says T00 (as
//     interledger-rs; JS throws a plain Error, so F00): the connector's configuration lacks a
//     rate, the sender did nothing wrong, and a config reload can fix it.
//   - The ecb backend fetches the ECB's rates like JS, but keeps them fresh: it refreshes them
//     (hourly by default), refuses them once older than maxAge (*NoRatesError, T00), and
//     does not stop the connector when the ECB cannot be reached (see ECB). The JS backends
//     ecb-plus-xrp and ecb-plus-coinmarketcap call other public APIs and are not provided; the
//     static backend takes the same shape of rates (units of each asset per one unit of a
//     base) from CONNECTOR_BACKEND_CONFIG, and computes with the ecb backend's formula.
package rates

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/shopspring/decimal"
)

// Asset is an account's asset: its code (passed to the backend to pick a rate) and its scale
// (an amount of 1 is 10^-Scale units of the asset).
type Asset struct {
	Code  string
	Scale uint8
}

func (a Asset) String() string { return fmt.Sprintf("%s (scale %d)", a.Code, a.Scale) }

// Backend is a source of exchange rates.
type Backend interface {
	// Name is the CONNECTOR_BACKEND name of the backend.
	Name() string
	// Rate is the reference rate: how many whole units of destAsset one whole unit of
	// sourceAsset is worth, without scale or spread (for the admin API and for checks).
	Rate(sourceAsset, destAsset string) (decimal.Decimal, error)
	// ScaledRate is what the connector multiplies amounts by: destination base units per source
	// base unit, scales and spread applied, rounded to 15 significant digits exactly as the JS
	// backend of the same name computes it.
	ScaledRate(src, dst Asset, spread decimal.Decimal) (decimal.Decimal, error)
}

// ContextBackend is implemented by backends whose ScaledRate may wait (the ecb backend, for a
// fetch when it holds no usable rates). ScaledRateContext waits no longer than ctx, so that a
// packet waits no longer than its expiry; the Converter's RateContext and ConvertContext use it.
// Backends that answer at once (one-to-one, static) need not implement it.
type ContextBackend interface {
	Backend
	ScaledRateContext(ctx context.Context, src, dst Asset, spread decimal.Decimal) (decimal.Decimal, error)
}

// Immutable is implemented by backends whose rates never change after construction. The
// Converter caches their scaled rates per asset pair; a backend with live rates must not
// implement it (or must return false).
type Immutable interface {
	Immutable() bool
}

// Sentinels for errors.Is.
var (
	ErrUnknownAsset = errors.New("rates: no rate for asset")
	ErrOverflow     = errors.New("rates: converted amount does not fit in a uint64")
	ErrInvalidRate  = errors.New("rates: rate is negative")
)

// UnknownAssetError says that a backend has no rate for an asset code.
type UnknownAssetError struct {
	Backend string
	Code    string
	Known   []string // the codes the backend has, sorted, for the message
}

func (e *UnknownAssetError) Error() string {
	hint := "add it to CONNECTOR_BACKEND_CONFIG"
	if e.Backend == NameECB {
		// The ECB's list is not ours to extend: say where a rate for another asset can come from.
		hint = "the ECB does not publish it; use the static backend to give it a rate"
	}
	return fmt.Sprintf("no exchange rate for asset %q in the %s backend (it has rates for: %s); %s",
		e.Code, e.Backend, joinOrNone(e.Known), hint)
}

// Is makes errors.Is(err, ErrUnknownAsset) work.
func (e *UnknownAssetError) Is(target error) bool { return target == ErrUnknownAsset }

// OverflowError says that amount converted from Source to Dest exceeds the largest ILP amount.
type OverflowError struct {
	Amount    uint64
	Source    Asset
	Dest      Asset
	Rate      decimal.Decimal // the scaled rate that was applied
	MaxAmount uint64          // the largest source amount that converts without overflow
}

func (e *OverflowError) Error() string {
	return fmt.Sprintf("amount %d of %s converts to more than %d of %s (the largest ILP amount) at rate %s; send at most %d per packet",
		e.Amount, e.Source, uint64(math.MaxUint64), e.Dest, e.Rate, e.MaxAmount)
}

// Is makes errors.Is(err, ErrOverflow) work.
func (e *OverflowError) Is(target error) bool { return target == ErrOverflow }

// Code is the ILP error code the connector should reject with for an error of this package:
// F08 for an overflow (with ilp.AmountTooLargeData(Amount, MaxAmount)), T00 otherwise.
func Code(err error) ilp.ErrorCode {
	if errors.Is(err, ErrOverflow) {
		return ilp.CodeAmountTooLarge
	}
	return ilp.CodeInternalError
}

func joinOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	out := s[0]
	for _, x := range s[1:] {
		out += ", " + x
	}
	return out
}
