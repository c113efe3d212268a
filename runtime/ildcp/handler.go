package ildcp

import (
	"context"
	"errors"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/textcut"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// HandlerOption configures Handler.
type HandlerOption func(*handler)

// WithAddress sets the triggeredBy of the Rejects the handler builds: the parent connector's
// own address. Without it they carry "peer.config" (as RFC 38 does for peer.settle), a valid
// address that tells the child which protocol refused it.
func WithAddress(self ilp.Address) HandlerOption {
	return func(h *handler) { h.self = self }
}

// WithClock replaces time.Now for the expiry check (tests).
func WithClock(now func() time.Time) HandlerOption {
	return func(h *handler) { h.now = now }
}

type handler struct {
	info func() (Info, error)
	self ilp.Address
	now  func() time.Time
}

// Handler answers peer.config requests from one child with what info returns for it. The
// request must go to peer.config (else F02), carry the peer-protocol condition (else F05) and
// not be expired (else R02, as the JS connector answers an expired source transfer). When
// info fails, a *ilp.Reject it returns is passed on as is, and any other error becomes F00
// with the error's text, as ilp-protocol-ildcp does; an Info that would not encode becomes
// T00, since the fault is ours.
func Handler(info func() (Info, error), opts ...HandlerOption) ilp.Handler {
	h := &handler{info: info, self: Destination, now: time.Now}
	for _, o := range opts {
		o(h)
	}
	return h.handle
}

func (h *handler) handle(_ context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
	switch {
	case p.Destination != Destination:
		return nil, ilp.Rejectf(ilp.CodeUnreachable, h.self, "IL-DCP answers %s only, not %s", Destination, p.Destination)
	case p.ExecutionCondition != ilp.PeerCondition:
		return nil, ilp.Rejectf(ilp.CodeWrongCondition, h.self, "an IL-DCP request must carry the peer protocol condition %x", ilp.PeerCondition)
	case !h.now().Before(p.ExpiresAt):
		return nil, ilp.Rejectf(ilp.CodeInsufficientTimeout, h.self, "IL-DCP request expired at %s", p.ExpiresAt.UTC().Format(time.RFC3339Nano))
	}
	info, err := h.info()
	if err != nil {
		if rej, ok := errors.AsType[*ilp.Reject](err); ok {
			return nil, rej
		}
		return nil, ilp.Rejectf(ilp.CodeBadRequest, h.self, "%s", textcut.Prefix(err.Error(), ilp.MaxMessageSize))
	}
	if err := info.Validate(); err != nil {
		return nil, ilp.Rejectf(ilp.CodeInternalError, h.self, "the parent has no valid IL-DCP configuration for this account: %v", err)
	}
	return info.Fulfill(), nil
}
