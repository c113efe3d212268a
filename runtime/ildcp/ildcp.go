// Package ildcp implements the Interledger Dynamic Configuration Protocol (RFC 31): a child
// asks its parent for its ILP address and asset with a Prepare to peer.config, and the parent
// answers with a Fulfill whose data carries them.
package ildcp

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// Destination is the address of IL-DCP requests. Connectors never forward peer.* packets.
const Destination ilp.Address = "peer.config"

// DefaultExpiry is how long a request lives when the context has no earlier deadline: the 60 s
// that ilp-protocol-ildcp (JS) uses.
const DefaultExpiry = 60 * time.Second

// maxAssetCode bounds the asset code we accept and send. RFC 31 sets no limit; real codes
// are a few characters, and a bound keeps a broken parent from handing us megabytes.
const maxAssetCode = 255

// Info is what a parent tells its child: the child's ILP address and the asset of their link.
type Info struct {
	Address    ilp.Address
	AssetScale uint8
	AssetCode  string
}

// Validate reports what makes Info unfit to send or use.
func (i Info) Validate() error {
	if err := ilp.ValidateAddress(string(i.Address)); err != nil {
		return fmt.Errorf("ildcp: client address: %w", err)
	}
	switch {
	case i.AssetCode == "":
		return errors.New("ildcp: asset code is empty")
	case len(i.AssetCode) > maxAssetCode:
		return fmt.Errorf("ildcp: asset code is %d bytes, the limit is %d", len(i.AssetCode), maxAssetCode)
	case !utf8.ValidString(i.AssetCode):
		return fmt.Errorf("ildcp: asset code %q is not UTF-8", i.AssetCode)
	}
	return nil
}

// Request builds the peer.config Prepare: amount 0, the peer-protocol condition, empty data.
func Request(expiresAt time.Time) *ilp.Prepare {
	return &ilp.Prepare{
		Amount:             0,
		ExpiresAt:          expiresAt,
		ExecutionCondition: ilp.PeerCondition,
		Destination:        Destination,
		Data:               []byte{},
	}
}

// Fulfill is the parent's answer carrying i: the zero fulfillment, and data = clientAddress
// var-string, assetScale UInt8, assetCode var-string. It does not validate i; see Validate.
func (i Info) Fulfill() *ilp.Fulfill {
	data := make([]byte, 0, 2+len(i.Address)+1+2+len(i.AssetCode))
	data = ilp.AppendVarString(data, string(i.Address))
	data = append(data, i.AssetScale)
	data = ilp.AppendVarString(data, i.AssetCode)
	return &ilp.Fulfill{Fulfillment: ilp.PeerFulfillment, Data: data}
}

// ParseResponse reads the Info out of the parent's Fulfill. It requires the zero fulfillment,
// a valid address and a non-empty UTF-8 asset code; bytes after the asset code are ignored
// (RFC 30 extensibility).
func ParseResponse(f *ilp.Fulfill) (Info, error) {
	if f == nil {
		return Info{}, errors.New("ildcp: no response")
	}
	if f.Fulfillment != ilp.PeerFulfillment {
		return Info{}, fmt.Errorf("ildcp: response fulfillment %x is not the 32 zero bytes of peer protocols", f.Fulfillment)
	}
	r := ilp.NewReader(f.Data)
	addr := r.VarOctetString()
	scale := r.Uint8()
	code := r.VarOctetString()
	if err := r.Err(); err != nil {
		return Info{}, fmt.Errorf("ildcp: response data %x: %w", f.Data, err)
	}
	info := Info{Address: ilp.Address(addr), AssetScale: scale, AssetCode: string(code)}
	if err := info.Validate(); err != nil {
		return Info{}, fmt.Errorf("ildcp: response: %w", err)
	}
	return info, nil
}

// Send delivers a Prepare to the parent and returns its Fulfill, or an error (a *ilp.Reject
// when the parent rejected).
type Send func(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error)

// Fetch asks the parent for this node's configuration. The request expires at the context's
// deadline, or DefaultExpiry from now if that is sooner or there is none.
func Fetch(ctx context.Context, send Send) (Info, error) {
	if err := ctx.Err(); err != nil {
		return Info{}, fmt.Errorf("ildcp: %w", err)
	}
	expiresAt := time.Now().Add(DefaultExpiry)
	if d, ok := ctx.Deadline(); ok && d.Before(expiresAt) {
		expiresAt = d
	}
	f, err := send(ctx, Request(expiresAt))
	if err != nil {
		if rej, ok := errors.AsType[*ilp.Reject](err); ok {
			return Info{}, fmt.Errorf("ildcp: parent %s rejected the peer.config request: %w", rej.TriggeredBy, err)
		}
		return Info{}, fmt.Errorf("ildcp: peer.config request failed: %w", err)
	}
	return ParseResponse(f)
}
