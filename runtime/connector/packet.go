package connector

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/textcut"
	"github.com/ilpfleet/ilpfleet/runtime/btp"
	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/ildcp"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/link"
	"github.com/ilpfleet/ilpfleet/runtime/rates"
	"github.com/ilpfleet/ilpfleet/runtime/routing"
	"github.com/ilpfleet/ilpfleet/runtime/settlement"
)

// echoPrefix starts the data of an echo (ping) packet, as in the JS and Rust connectors.
var echoPrefix = []byte("ECHOECHOECHOECHO")

const (
	echoRequest  = 0
	echoResponse = 1
	peerPrefix   = "peer."
)

// core is the end of every incoming pipeline: peer protocols, echo, then forwarding.
func (c *Connector) core(ctx context.Context, src *account, p *ilp.Prepare) (*ilp.Fulfill, error) {
	if strings.HasPrefix(string(p.Destination), peerPrefix) {
		return c.peerProtocol(ctx, src, p)
	}
	s := c.settings.Load()
	if s.echo && bytes.HasPrefix(p.Data, echoPrefix) && p.Destination == c.self() {
		return c.echo(ctx, src, p, s)
	}
	return c.forward(ctx, src, p, s, s.reflect)
}

// peerProtocol answers peer.config for children, peer.route.* (CCP, ccp.go) and peer.settle
// (settlement engine messages, settlement.go); the other peer protocols are not built yet.
func (c *Connector) peerProtocol(ctx context.Context, src *account, p *ilp.Prepare) (*ilp.Fulfill, error) {
	if strings.HasPrefix(string(p.Destination), "peer.route.") {
		return c.handleCCP(ctx, src, p)
	}
	if p.Destination == settlement.PeerSettle {
		return c.settler.HandlePeer(ctx, src.id, p)
	}
	self := c.self()
	if p.Destination != ildcp.Destination {
		return nil, ilp.Rejectf(ilp.CodeUnreachable, self, "%s is not supported yet by this connector", peerProtocolName(p.Destination))
	}
	ac := src.pipes.Load().cfg
	if ac.Relation != config.RelationChild {
		// As the JS IL-DCP host: only a child gets its address from us.
		return nil, ilp.Rejectf(ilp.CodeBadRequest, self,
			"peer.config is answered only for child accounts; account %s is a %s", src.id, ac.Relation)
	}
	info := func() (ildcp.Info, error) {
		if c.address.Load() == nil {
			return ildcp.Info{}, ilp.Rejectf(ilp.CodePeerUnreachable, self, "this connector does not know its own address yet")
		}
		return ildcp.Info{Address: ilp.Address(routing.ChildAddress(string(self), src.id, ac)),
			AssetCode: ac.AssetCode, AssetScale: ac.AssetScale}, nil
	}
	return ildcp.Handler(info, ildcp.WithAddress(self))(ctx, p)
}

// peerProtocolName is the protocol part of a peer.* address ("peer.route" for
// "peer.route.control"), for messages.
func peerProtocolName(a ilp.Address) string {
	s := string(a)
	if i := strings.IndexByte(s[len(peerPrefix):], '.'); i >= 0 {
		return s[:len(peerPrefix)+i]
	}
	return s
}

// echo answers an echo request addressed to this connector by sending an echo response to the
// source address it names, with the same condition and expiry, as the JS connector (v23) does:
// the response is routed like any packet from src (reflection allowed, since going back is the
// point), so forward shortens its expiry once by minMessageWindow, as for any packet.
func (c *Connector) echo(ctx context.Context, src *account, p *ilp.Prepare, s *settings) (*ilp.Fulfill, error) {
	self := c.self()
	r := ilp.NewReader(p.Data[len(echoPrefix):])
	typ := r.Uint8()
	if r.Err() != nil {
		return nil, ilp.Rejectf(ilp.CodeInvalidPacket, self, "echo packet has no type byte after the ECHOECHOECHOECHO prefix")
	}
	if typ != echoRequest {
		return nil, ilp.Rejectf(ilp.CodeInvalidPacket, self, "unexpected echo packet of type %d: this connector sends no echo requests", typ)
	}
	back := ilp.Address(r.VarOctetString())
	if r.Err() != nil {
		return nil, ilp.Rejectf(ilp.CodeInvalidPacket, self, "echo request has no source address: %v", r.Err())
	}
	if err := back.Validate(); err != nil {
		return nil, ilp.Rejectf(ilp.CodeInvalidPacket, self, "echo request has an invalid source address: %v", err)
	}
	reply := &ilp.Prepare{Amount: p.Amount, ExpiresAt: p.ExpiresAt,
		ExecutionCondition: p.ExecutionCondition, Destination: back,
		Data: append(append(make([]byte, 0, len(echoPrefix)+1), echoPrefix...), echoResponse)}
	return c.forward(ctx, src, reply, s, true)
}

// forward routes p from src to its next hop: route, rate, expiry, outgoing pipeline.
func (c *Connector) forward(ctx context.Context, src *account, p *ilp.Prepare, s *settings, reflect bool) (*ilp.Fulfill, error) {
	self := c.self()
	if err := ilp.CheckNetwork(p.Destination, s.env); err != nil {
		return nil, ilp.Rejectf(ilp.CodeUnreachable, self, "cannot forward to %s: %v", p.Destination, err)
	}
	hop, err := c.table.Load().Resolve(string(p.Destination), src.id, reflect)
	if err != nil {
		var re *routing.Error
		if errors.As(err, &re) {
			return nil, re.Reject(self)
		}
		return nil, ilp.Rejectf(ilp.CodeUnreachable, self, "no route to %s: %v", p.Destination, err)
	}
	next := (*c.accounts.Load())[hop]
	if next == nil {
		return nil, ilp.Rejectf(ilp.CodeUnreachable, self, "no route to %s: next hop account %s is being removed", p.Destination, hop)
	}
	if why := next.enter(); why != open {
		return nil, closedReject(self, hop, why, true, p.Destination)
	}
	defer next.inflight.Add(-1)
	if !next.link.Connected() {
		return nil, ilp.Rejectf(ilp.CodePeerUnreachable, self, "no connection to account %s (next hop for %s)", hop, p.Destination)
	}
	amount, err := s.convert(ctx, p, src.asset, next.asset)
	if err != nil {
		return nil, rateReject(self, p.Amount, err)
	}
	expiry, rej := c.destinationExpiry(p.ExpiresAt, s, self)
	if rej != nil {
		return nil, rej
	}
	out := &ilp.Prepare{Amount: amount, ExpiresAt: expiry, ExecutionCondition: p.ExecutionCondition,
		Destination: p.Destination, Data: p.Data}
	return next.pipes.Load().out(ctx, out)
}

// convert converts p's amount from src to dst. A backend that may wait for its rates (ecb,
// before its first fetch ends) waits no longer than p expires; the others never wait, and a
// packet does not pay for a deadline timer it would not use.
func (s *settings) convert(ctx context.Context, p *ilp.Prepare, src, dst rates.Asset) (uint64, error) {
	if !s.conv.Waits() {
		return s.conv.Convert(p.Amount, src, dst, s.spread)
	}
	ctx, cancel := context.WithDeadline(ctx, p.ExpiresAt)
	defer cancel()
	return s.conv.ConvertContext(ctx, p.Amount, src, dst, s.spread)
}

// rateReject turns a conversion error into a Reject: F08 with the largest amount that would
// convert for an overflow, so that a STREAM sender shrinks its packets; T00 otherwise (a rate
// missing from our config is not the sender's fault).
func rateReject(self ilp.Address, amount uint64, err error) *ilp.Reject {
	var oe *rates.OverflowError
	if errors.As(err, &oe) {
		r := ilp.Rejectf(ilp.CodeAmountTooLarge, self, "amount %d is too large to convert from %s to %s; at most %d", amount, oe.Source, oe.Dest, oe.MaxAmount)
		r.Data = ilp.AmountTooLargeData(amount, oe.MaxAmount)
		return r
	}
	return ilp.Rejectf(rates.Code(err), self, "cannot convert the amount: %v", err)
}

// destinationExpiry is the JS route builder's rule: min(source expiry − minMessageWindow,
// now + maxHoldTime), refused with R02 when less than minMessageWindow would be left.
func (c *Connector) destinationExpiry(src time.Time, s *settings, self ilp.Address) (time.Time, *ilp.Reject) {
	now := c.clock.Now()
	if src.Before(now) {
		return time.Time{}, ilp.Rejectf(ilp.CodeInsufficientTimeout, self,
			"source transfer has already expired. sourceExpiry=%s currentTime=%s", fmtTime(src), fmtTime(now))
	}
	dest := src.Add(-s.minWindow)
	if limit := now.Add(s.maxHold); limit.Before(dest) {
		dest = limit
	}
	if dest.Sub(now) < s.minWindow {
		return time.Time{}, ilp.Rejectf(ilp.CodeInsufficientTimeout, self,
			"source transfer expires too soon to complete payment. actualSourceExpiry=%s requiredSourceExpiry=%s currentTime=%s",
			fmtTime(src), fmtTime(now.Add(2*s.minWindow)), fmtTime(now))
	}
	return dest, nil
}

func fmtTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// send is the end of every outgoing pipeline: the link, with its failures turned into Rejects.
func (c *Connector) send(ctx context.Context, a *account, p *ilp.Prepare) (*ilp.Fulfill, error) {
	f, err := a.link.Send(ctx, p)
	if err == nil {
		if f == nil {
			return nil, ilp.Rejectf(ilp.CodeInternalError, c.self(), "link of account %s returned no answer", a.id)
		}
		return f, nil
	}
	return nil, c.linkReject(ctx, a.id, err)
}

// linkReject maps a link error. A Reject from the peer is passed on as it is.
func (c *Connector) linkReject(ctx context.Context, id string, err error) error {
	var r *ilp.Reject
	if errors.As(err, &r) {
		return r
	}
	self := c.self()
	switch {
	case errors.Is(err, link.ErrNotConnected):
		return ilp.Rejectf(ilp.CodePeerUnreachable, self, "no connection to account %s", id)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, btp.ErrTimeout),
		errors.Is(ctx.Err(), context.DeadlineExceeded):
		return ilp.Rejectf(ilp.CodeTransferTimedOut, self, "account %s did not answer in time", id)
	}
	c.log.Debug("link error", "account", id, "error", err)
	return ilp.Rejectf(ilp.CodePeerUnreachable, self, "account %s: %s", id, textcut.Cut(err.Error(), maxLinkErrorText))
}

// maxLinkErrorText bounds how much of a link's error a Reject quotes: the error can carry what
// the peer sent (its error's name and data, which btp cuts too, or any other link's text),
// which the sender does not need whole.
const maxLinkErrorText = 512
