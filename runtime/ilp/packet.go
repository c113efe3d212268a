// Package ilp holds the Interledger Protocol v4 packets (RFC 27), their OER codec (RFC 30),
// error codes, ILP addresses (RFC 15) and timestamps. It is the leaf of the runtime: it imports
// nothing of the project.
package ilp

import (
	"context"
	"time"
)

// Packet type identifiers on the wire (RFC 27).
const (
	TypePrepare byte = 12
	TypeFulfill byte = 13
	TypeReject  byte = 14
)

// Size limits from the ASN.1 definitions of RFC 27.
const (
	MaxDataSize       = 32767 // data field of every packet
	MaxMessageSize    = 8191  // Reject message
	MaxAddressSize    = 1023  // RFC 15
	MaxPacketSize     = 1 + 4 + 8 + 17 + 32 + 3 + MaxAddressSize + 3 + MaxDataSize
	ConditionSize     = 32
	FulfillmentSize   = 32
	TimestampSize     = 17
	staticPrepareSize = 8 + TimestampSize + ConditionSize // amount, expiry, condition
)

// Prepare asks the next hop to forward value towards Destination. Data aliases the buffer it was
// parsed from; a connector must not modify it.
type Prepare struct {
	Amount             uint64
	ExpiresAt          time.Time
	ExecutionCondition [ConditionSize]byte
	Destination        Address
	Data               []byte
}

// Fulfill proves that the receiver got the payment: sha256(Fulfillment) == ExecutionCondition.
type Fulfill struct {
	Fulfillment [FulfillmentSize]byte
	Data        []byte
}

// Reject refuses a Prepare. It implements error so that a handler can return it directly.
type Reject struct {
	Code        ErrorCode
	TriggeredBy Address
	Message     string
	Data        []byte
}

// Address is an ILP address (RFC 15), such as "g.us.acme.bob". See ValidateAddress.
type Address string

// Handler answers a Prepare with a Fulfill, or with an error: a *Reject, or any other error that
// the connector's error handler turns into a Reject (T00, or F02 from a link).
type Handler func(ctx context.Context, p *Prepare) (*Fulfill, error)
