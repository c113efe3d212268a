// Package btp implements BTP 2.0 (RFC 23), the Bilateral Transfer Protocol, over WebSocket:
// the frame codec, a connection core shared by every link, and three link.Link transports that
// mirror the JavaScript plugins an ilp-connector account can use:
//
//   - Client: ilp-plugin-btp with `server: "btp+ws://user:token@host:port/path"`;
//   - PeerServer: ilp-plugin-btp with `listener: {port, secret}` (one peer);
//   - ChildServer: ilp-plugin-mini-accounts (many children behind one account).
//
// ILP packets travel as the `ilp` sub-protocol of a BTP Message (requests) and Response
// (replies). ILP Rejects are ordinary Responses; a BTP Error means the transport failed.
package btp

import (
	"errors"
	"fmt"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// Frame types of BTP 2.0. Types 3, 4 and 5 belonged to BTP 1.0 and are unused.
const (
	TypeResponse byte = 1
	TypeError    byte = 2
	TypeMessage  byte = 6
	TypeTransfer byte = 7
)

// ContentType tells how the data of a ProtocolData entry is encoded.
type ContentType uint8

// The three content types of RFC 23.
const (
	ContentOctetStream ContentType = 0 // application/octet-stream
	ContentText        ContentType = 1 // text/plain;charset=utf-8
	ContentJSON        ContentType = 2 // application/json
)

// Sub-protocol names with a meaning for this package.
const (
	ProtocolILP          = "ilp"
	ProtocolAuth         = "auth"
	ProtocolAuthToken    = "auth_token"
	ProtocolAuthUsername = "auth_username"
)

// MaxFrameSize bounds one BTP frame (one WebSocket message). The largest ILP packet is about
// 34 KB; 64 KiB leaves room for it plus side protocols, and 4 KiB more for the envelope. A larger
// message closes the connection (WebSocket status 1009) instead of being buffered.
const MaxFrameSize = 64<<10 + 4<<10

// maxErrorData is the bound RFC 23 puts on the data of an Error frame.
const maxErrorData = 8192

// maxProtocols bounds the entries of one ProtocolData list; real peers send one to three.
const maxProtocols = 256

// ProtocolData is one sub-protocol entry of a frame. Data aliases the frame it was parsed from.
type ProtocolData struct {
	Name        string
	ContentType ContentType
	Data        []byte
}

// Frame is one BTP packet. Which fields mean something depends on Type: Amount for Transfer;
// Code, Name, TriggeredAt and ErrorData for Error; Protocols for all four.
type Frame struct {
	Type        byte
	RequestID   uint32
	Amount      uint64
	Code        string
	Name        string
	TriggeredAt time.Time // zero when the peer sent a time this package cannot read
	ErrorData   []byte
	Protocols   []ProtocolData
}

// Protocol returns the entry called name, or nil.
func (f *Frame) Protocol(name string) *ProtocolData {
	for i := range f.Protocols {
		if f.Protocols[i].Name == name {
			return &f.Protocols[i]
		}
	}
	return nil
}

// Primary is the name of the first (primary) sub-protocol, or "" when there is none.
func (f *Frame) Primary() string {
	if len(f.Protocols) == 0 {
		return ""
	}
	return f.Protocols[0].Name
}

// ErrUnknownType is wrapped by ParseFrame for a well-formed envelope of a type BTP 2.0 does not
// define. RFC 23: such frames get no reply.
var ErrUnknownType = errors.New("btp: unknown frame type")

// ErrFrameTooLarge is returned for a frame above MaxFrameSize.
var ErrFrameTooLarge = fmt.Errorf("btp: frame larger than %d bytes", MaxFrameSize)

// ParseFrame decodes b into f, reusing f.Protocols' backing array. Slices in f alias b. Bytes
// after the contents, and after the protocol data inside them, are ignored (RFC 30). For an
// unknown type it fills Type and RequestID and returns an error wrapping ErrUnknownType.
func ParseFrame(b []byte, f *Frame) error {
	typ, id, contents, err := splitEnvelope(b)
	if err != nil {
		return err
	}
	f.Type, f.RequestID = typ, id
	f.Amount, f.Code, f.Name, f.TriggeredAt, f.ErrorData = 0, "", "", time.Time{}, nil
	f.Protocols = f.Protocols[:0]
	r := ilp.NewReader(contents)
	switch f.Type {
	case TypeResponse, TypeMessage:
	case TypeTransfer:
		f.Amount = r.Uint64()
	case TypeError:
		if err := readError(r, f); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w %d (request %d)", ErrUnknownType, f.Type, f.RequestID)
	}
	if err := readProtocols(r, f); err != nil {
		return err
	}
	return nil
}

// readError reads the fields of an Error. RFC 23 bounds its data to 8192 bytes (and its code
// to 3 characters), and AppendFrame refuses to write more; a peer that sends more still has
// its Error read, the data cut to the bound: its code is what the sender of the request needs,
// and the frame is in memory already (bounded by MaxFrameSize). Its name has no bound but the
// frame's.
func readError(r *ilp.Reader, f *Frame) error {
	f.Code = string(r.Bytes(3))
	f.Name = string(r.VarOctetString())
	// Lenient: JS and Rust write 3 ms digits where RFC 30 wants none; an unreadable time must not
	// make the whole Error unreadable, or the request it answers would only time out.
	f.TriggeredAt, _ = ParseGeneralizedTime(r.VarOctetString())
	f.ErrorData = r.VarOctetString()
	if len(f.ErrorData) > maxErrorData {
		f.ErrorData = f.ErrorData[:maxErrorData]
	}
	return nil
}

func readProtocols(r *ilp.Reader, f *Frame) error {
	n := r.VarUint()
	if err := r.Err(); err != nil {
		return fmt.Errorf("btp: type %d: %w", f.Type, err)
	}
	if n > maxProtocols {
		return fmt.Errorf("btp: %d protocol data entries, at most %d allowed", n, maxProtocols)
	}
	for i := uint64(0); i < n; i++ {
		name := r.VarOctetString()
		ct := ContentType(r.Uint8())
		data := r.VarOctetString()
		if err := r.Err(); err != nil {
			return fmt.Errorf("btp: protocol data entry %d: %w", i, err)
		}
		f.Protocols = append(f.Protocols, ProtocolData{Name: internName(name), ContentType: ct, Data: data})
	}
	return nil
}

// internName avoids one allocation per entry for the names every frame carries.
func internName(b []byte) string {
	switch string(b) {
	case ProtocolILP:
		return ProtocolILP
	case ProtocolAuth:
		return ProtocolAuth
	case ProtocolAuthToken:
		return ProtocolAuthToken
	case ProtocolAuthUsername:
		return ProtocolAuthUsername
	}
	return string(b)
}

// AppendFrame appends the encoding of f to b. It fails on values the wire cannot carry.
func AppendFrame(b []byte, f *Frame) ([]byte, error) {
	n, err := contentsSize(f)
	if err != nil {
		return b, err
	}
	b = append(b, f.Type)
	b = ilp.AppendUint32(b, f.RequestID)
	b = ilp.AppendLength(b, n)
	switch f.Type {
	case TypeTransfer:
		b = ilp.AppendUint64(b, f.Amount)
	case TypeError:
		b = append(b, f.Code...)
		b = ilp.AppendVarString(b, f.Name)
		b = appendGeneralizedTime(b, f.TriggeredAt)
		b = ilp.AppendVarOctetString(b, f.ErrorData)
	}
	return appendProtocols(b, f.Protocols), nil
}

func contentsSize(f *Frame) (int, error) {
	n := protocolsSize(f.Protocols)
	switch f.Type {
	case TypeResponse, TypeMessage:
	case TypeTransfer:
		n += 8
	case TypeError:
		if len(f.Code) != 3 {
			return 0, fmt.Errorf("btp: error code %q must be 3 characters", f.Code)
		}
		if len(f.ErrorData) > maxErrorData {
			return 0, fmt.Errorf("btp: error data of %d bytes, at most %d allowed", len(f.ErrorData), maxErrorData)
		}
		t := generalizedTimeSize + 1
		n += 3 + ilp.LengthSize(len(f.Name)) + len(f.Name) + t + ilp.LengthSize(len(f.ErrorData)) + len(f.ErrorData)
	default:
		return 0, fmt.Errorf("btp: cannot encode frame type %d", f.Type)
	}
	if n+10 > MaxFrameSize {
		return 0, ErrFrameTooLarge
	}
	return n, nil
}

func protocolsSize(ps []ProtocolData) int {
	n := varUintSize(uint64(len(ps)))
	for i := range ps {
		n += ilp.LengthSize(len(ps[i].Name)) + len(ps[i].Name) + 1 + ilp.LengthSize(len(ps[i].Data)) + len(ps[i].Data)
	}
	return n
}

func appendProtocols(b []byte, ps []ProtocolData) []byte {
	b = ilp.AppendVarUint(b, uint64(len(ps)))
	for i := range ps {
		b = ilp.AppendVarString(b, ps[i].Name)
		b = append(b, byte(ps[i].ContentType))
		b = ilp.AppendVarOctetString(b, ps[i].Data)
	}
	return b
}

func varUintSize(v uint64) int {
	n := 2
	for v >>= 8; v > 0; v >>= 8 {
		n++
	}
	return n
}

// splitEnvelope reads the envelope of a frame: type, request id and contents.
func splitEnvelope(b []byte) (typ byte, id uint32, contents []byte, err error) {
	if len(b) > MaxFrameSize {
		return 0, 0, nil, ErrFrameTooLarge
	}
	r := ilp.NewReader(b)
	typ = r.Uint8()
	id = r.Uint32()
	contents = r.VarOctetString()
	if err := r.Err(); err != nil {
		return 0, 0, nil, fmt.Errorf("btp: envelope: %w", err)
	}
	return typ, id, contents, nil
}

// findProtocol scans the ProtocolData of a Response or Message contents for the entry called
// name (only the primary entry when primaryOnly) without building a Frame: the packet path's
// way to reach the `ilp` entry with no allocation.
func findProtocol(contents []byte, name string, primaryOnly bool) ([]byte, bool, error) {
	r := ilp.NewReader(contents)
	n := r.VarUint()
	if n > maxProtocols {
		return nil, false, fmt.Errorf("btp: %d protocol data entries, at most %d allowed", n, maxProtocols)
	}
	for i := uint64(0); i < n && r.Err() == nil; i++ {
		entry := r.VarOctetString()
		r.Uint8()
		data := r.VarOctetString()
		if r.Err() == nil && string(entry) == name {
			return data, true, nil
		}
		if primaryOnly {
			break
		}
	}
	if err := r.Err(); err != nil {
		return nil, false, fmt.Errorf("btp: protocol data: %w", err)
	}
	return nil, false, nil
}
