// Package ccp is the Connector-to-Connector Protocol (CCP v2) as the JS connector
// (ilp-protocol-ccp) and interledger-rs speak it: peer.route.control asks a peer to send us its
// routes (SYNC) or to stop (IDLE); peer.route.update carries the changes of the sender's
// forwarding table between two epochs, new routes and withdrawn prefixes, or nothing at all
// (a heartbeat).
//
// The codec (this file) turns the two requests into ILP Prepares and back. The Speaker
// (speaker.go) is the route broadcaster and receiver of one connector: it learns routes from
// its peers, selects the best route per prefix (runtime/routing), swaps the connector's
// routing table copy-on-write, keeps the epoch log of its forwarding table, and sends each
// peer the part of the log it has not acknowledged.
package ccp

import (
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// The peer protocol addresses of CCP.
const (
	ControlDestination ilp.Address = "peer.route.control"
	UpdateDestination  ilp.Address = "peer.route.update"
)

// RequestExpiry is how long a CCP request is valid (PEER_PROTOCOL_EXPIRY_DURATION in JS).
const RequestExpiry = 60 * time.Second

// Mode is the mode a route control request asks the peer's sender to be in.
type Mode uint8

// The modes of a route sender.
const (
	ModeIdle Mode = 0 // send no updates
	ModeSync Mode = 1 // send updates
)

// String is the name the JS admin API shows.
func (m Mode) String() string {
	if m == ModeSync {
		return "SYNC"
	}
	return "IDLE"
}

// TableID is a routing table ID: a UUID, raw on the wire.
type TableID [16]byte

// String formats id as a lower-case UUID, as JS shows it.
func (id TableID) String() string {
	var b [36]byte
	hex.Encode(b[0:8], id[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], id[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], id[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], id[8:10])
	b[23] = '-'
	hex.Encode(b[24:], id[10:])
	return string(b[:])
}

// ControlRequest is the data of a peer.route.control Prepare.
type ControlRequest struct {
	Mode                    Mode
	LastKnownRoutingTableID TableID
	LastKnownEpoch          uint32
	Features                []string
}

// Prop flags (meta byte of a route property).
const (
	PropOptional   = 0x80
	PropTransitive = 0x40
	PropPartial    = 0x20
	PropUTF8       = 0x10
)

// Prop is a route property. No well-known property IDs exist; they are carried, not used.
type Prop struct {
	Meta  uint8
	ID    uint16
	Value []byte
}

// Route is one route of an update: the prefix, the path of connector addresses to it (the
// speaker first) and the route auth.
type Route struct {
	Prefix string
	Path   []string
	Auth   [32]byte
	Props  []Prop
}

// UpdateRequest is the data of a peer.route.update Prepare: the changes of the speaker's
// forwarding table from epoch FromEpochIndex (inclusive) to ToEpochIndex (exclusive).
type UpdateRequest struct {
	RoutingTableID    TableID
	CurrentEpochIndex uint32
	FromEpochIndex    uint32
	ToEpochIndex      uint32
	HoldDownTime      uint32 // ms the routes stay valid without another update
	Speaker           string // the sender's ILP address
	NewRoutes         []Route
	WithdrawnRoutes   []string
}

// maxCount bounds the element counts a decoder accepts before it reads the elements, so that
// a forged count cannot make it allocate: every element takes at least one byte.
func maxCount(r *ilp.Reader) int { return r.Len() }

// AppendBinary appends the OER encoding of c.
func (c *ControlRequest) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, byte(c.Mode))
	b = append(b, c.LastKnownRoutingTableID[:]...)
	b = ilp.AppendUint32(b, c.LastKnownEpoch)
	b = ilp.AppendVarUint(b, uint64(len(c.Features)))
	for _, f := range c.Features {
		b = ilp.AppendVarString(b, f)
	}
	return b, nil
}

// ParseControlRequest decodes the data of a peer.route.control Prepare.
func ParseControlRequest(data []byte) (*ControlRequest, error) {
	r := ilp.NewReader(data)
	c := &ControlRequest{Mode: Mode(r.Uint8())}
	copy(c.LastKnownRoutingTableID[:], r.Bytes(16))
	c.LastKnownEpoch = r.Uint32()
	n := r.VarUint()
	if r.Err() == nil && n > uint64(maxCount(r)) {
		return nil, fmt.Errorf("ccp: route control request announces %d features in %d bytes", n, r.Len())
	}
	for i := uint64(0); i < n && r.Err() == nil; i++ {
		c.Features = append(c.Features, string(r.VarOctetString()))
	}
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("ccp: malformed route control request: %w", err)
	}
	if c.Mode != ModeIdle && c.Mode != ModeSync {
		return nil, fmt.Errorf("ccp: route control request has mode %d; only 0 (IDLE) and 1 (SYNC) exist", c.Mode)
	}
	return c, nil
}

// AppendBinary appends the OER encoding of u.
func (u *UpdateRequest) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, u.RoutingTableID[:]...)
	b = ilp.AppendUint32(b, u.CurrentEpochIndex)
	b = ilp.AppendUint32(b, u.FromEpochIndex)
	b = ilp.AppendUint32(b, u.ToEpochIndex)
	b = ilp.AppendUint32(b, u.HoldDownTime)
	b = ilp.AppendVarString(b, u.Speaker)
	b = ilp.AppendVarUint(b, uint64(len(u.NewRoutes)))
	for i := range u.NewRoutes {
		b = appendRoute(b, &u.NewRoutes[i])
	}
	b = ilp.AppendVarUint(b, uint64(len(u.WithdrawnRoutes)))
	for _, p := range u.WithdrawnRoutes {
		b = ilp.AppendVarString(b, p)
	}
	return b, nil
}

func appendRoute(b []byte, r *Route) []byte {
	b = ilp.AppendVarString(b, r.Prefix)
	b = ilp.AppendVarUint(b, uint64(len(r.Path)))
	for _, h := range r.Path {
		b = ilp.AppendVarString(b, h)
	}
	b = append(b, r.Auth[:]...)
	b = ilp.AppendVarUint(b, uint64(len(r.Props)))
	for _, p := range r.Props {
		meta := p.Meta
		if meta&PropOptional == 0 {
			meta |= PropTransitive // as the JS writer: well-known props are always transitive
		}
		b = append(b, meta, byte(p.ID>>8), byte(p.ID))
		b = ilp.AppendVarOctetString(b, p.Value)
	}
	return b
}

// ParseUpdateRequest decodes the data of a peer.route.update Prepare. The strings it returns
// are copies; the data may be reused.
func ParseUpdateRequest(data []byte) (*UpdateRequest, error) {
	r := ilp.NewReader(data)
	u := &UpdateRequest{}
	copy(u.RoutingTableID[:], r.Bytes(16))
	u.CurrentEpochIndex = r.Uint32()
	u.FromEpochIndex = r.Uint32()
	u.ToEpochIndex = r.Uint32()
	u.HoldDownTime = r.Uint32()
	u.Speaker = string(r.VarOctetString())
	n, err := count(r, "new routes")
	if err != nil {
		return nil, err
	}
	for i := 0; i < n && r.Err() == nil; i++ {
		rt, err := parseRoute(r)
		if err != nil {
			return nil, err
		}
		u.NewRoutes = append(u.NewRoutes, rt)
	}
	if n, err = count(r, "withdrawn routes"); err != nil {
		return nil, err
	}
	for i := 0; i < n && r.Err() == nil; i++ {
		u.WithdrawnRoutes = append(u.WithdrawnRoutes, string(r.VarOctetString()))
	}
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("ccp: malformed route update request: %w", err)
	}
	return u, nil
}

func count(r *ilp.Reader, what string) (int, error) {
	n := r.VarUint()
	if err := r.Err(); err != nil {
		return 0, fmt.Errorf("ccp: malformed route update request (count of %s): %w", what, err)
	}
	if n > uint64(maxCount(r)) {
		return 0, fmt.Errorf("ccp: route update request announces %d %s in %d bytes", n, what, r.Len())
	}
	return int(n), nil
}

func parseRoute(r *ilp.Reader) (Route, error) {
	rt := Route{Prefix: string(r.VarOctetString())}
	n, err := count(r, "path hops")
	if err != nil {
		return rt, err
	}
	for i := 0; i < n && r.Err() == nil; i++ {
		rt.Path = append(rt.Path, string(r.VarOctetString()))
	}
	copy(rt.Auth[:], r.Bytes(32))
	if n, err = count(r, "route properties"); err != nil {
		return rt, err
	}
	for i := 0; i < n && r.Err() == nil; i++ {
		p := Prop{Meta: r.Uint8()}
		if id := r.Bytes(2); len(id) == 2 {
			p.ID = uint16(id[0])<<8 | uint16(id[1])
		}
		p.Value = append([]byte(nil), r.VarOctetString()...)
		rt.Props = append(rt.Props, p)
	}
	return rt, r.Err()
}

// ControlPrepare is the peer.route.control Prepare carrying c, expiring at expiresAt.
func ControlPrepare(c *ControlRequest, expiresAt time.Time) *ilp.Prepare {
	data, _ := c.AppendBinary(nil)
	return &ilp.Prepare{ExpiresAt: expiresAt, ExecutionCondition: ilp.PeerCondition, Destination: ControlDestination, Data: data}
}

// UpdatePrepare is the peer.route.update Prepare carrying u, expiring at expiresAt.
func UpdatePrepare(u *UpdateRequest, expiresAt time.Time) *ilp.Prepare {
	data, _ := u.AppendBinary(nil)
	return &ilp.Prepare{ExpiresAt: expiresAt, ExecutionCondition: ilp.PeerCondition, Destination: UpdateDestination, Data: data}
}

// Fulfill is the answer to an accepted CCP request: the peer-protocol fulfillment, no data.
func Fulfill() *ilp.Fulfill { return &ilp.Fulfill{Fulfillment: ilp.PeerFulfillment} }

// ErrNotFulfilled is returned (wrapped) when a peer answered a CCP request with something
// other than the peer-protocol fulfillment.
var ErrNotFulfilled = errors.New("ccp: peer did not fulfill the request")

// checkRequest checks the envelope of an incoming CCP Prepare: the peer condition and an
// expiry in the future. The Reject carries triggeredBy self.
func checkRequest(p *ilp.Prepare, now time.Time, self ilp.Address) *ilp.Reject {
	switch {
	case p.ExecutionCondition != ilp.PeerCondition:
		return ilp.Rejectf(ilp.CodeWrongCondition, self, "a %s request must carry the peer protocol condition %x", p.Destination, ilp.PeerCondition)
	case !now.Before(p.ExpiresAt):
		return ilp.Rejectf(ilp.CodeInsufficientTimeout, self, "%s request expired at %s", p.Destination, p.ExpiresAt.UTC().Format(time.RFC3339Nano))
	}
	return nil
}
