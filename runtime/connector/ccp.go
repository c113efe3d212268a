package connector

import (
	"context"
	"sync"

	"github.com/ilpfleet/ilpfleet/runtime/admin"
	"github.com/ilpfleet/ilpfleet/runtime/ccp"
	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/link"
	"github.com/ilpfleet/ilpfleet/runtime/routing"
)

// ccpState is the connector's CCP route exchange: a ccp.Speaker while route broadcasting is
// enabled (CONNECTOR_ROUTE_BROADCAST_ENABLED), nil otherwise.
type ccpState struct {
	mu     sync.Mutex
	sp     *ccp.Speaker
	cancel context.CancelFunc
	done   chan struct{}
}

// ccpHost is the connector as a ccp.Speaker sees it.
type ccpHost struct{ c *Connector }

func (h ccpHost) Config() *config.Config    { return h.c.Config() }
func (h ccpHost) Address() ilp.Address      { return h.c.Address() }
func (h ccpHost) Connected(id string) bool  { return h.c.Connected(id) }
func (h ccpHost) SetTable(t *routing.Table) { h.c.table.Store(t) }
func (h ccpHost) SendPeer(ctx context.Context, id string, p *ilp.Prepare) (*ilp.Fulfill, error) {
	return h.c.sendPeer(ctx, id, p)
}

// sendPeer sends a peer protocol message (CCP, peer.settle) to an account's peer: straight over
// the link, as the JS connector's plugin.sendData, since it is not a payment and skips the
// outgoing pipeline.
func (c *Connector) sendPeer(ctx context.Context, id string, p *ilp.Prepare) (*ilp.Fulfill, error) {
	a := (*c.accounts.Load())[id]
	if a == nil {
		return nil, link.ErrNotConnected
	}
	return a.link.Send(ctx, p)
}

// speaker is the running Speaker, or nil.
func (c *Connector) speaker() *ccp.Speaker {
	c.routes.mu.Lock()
	defer c.routes.mu.Unlock()
	return c.routes.sp
}

// syncCCP starts or stops the Speaker as the config in force asks, or reloads it. Start and
// Apply call it with applyMu held.
func (c *Connector) syncCCP() {
	c.routes.mu.Lock()
	defer c.routes.mu.Unlock()
	enabled := c.Config().RouteBroadcastEnabled
	switch {
	case enabled && c.routes.sp == nil:
		sp := ccp.New(ccpHost{c}, ccp.Options{Clock: c.clock, Log: c.log.With("component", "ccp")})
		ctx, cancel := context.WithCancel(context.Background())
		c.routes.sp, c.routes.cancel, c.routes.done = sp, cancel, make(chan struct{})
		go func(done chan struct{}) {
			defer close(done)
			sp.Run(ctx)
		}(c.routes.done)
	case enabled:
		c.routes.sp.Reload()
	case c.routes.sp != nil:
		c.stopCCPLocked() // commit then puts its table in force again: see there
	}
}

// stopCCP stops the Speaker and waits for its requests on the wire.
func (c *Connector) stopCCP() {
	c.routes.mu.Lock()
	defer c.routes.mu.Unlock()
	c.stopCCPLocked()
}

func (c *Connector) stopCCPLocked() {
	if c.routes.sp == nil {
		return
	}
	// Stop first: a request handled from now on must not put a table in force (handleCCP may
	// have taken the Speaker just before).
	c.routes.sp.Stop()
	c.routes.cancel()
	<-c.routes.done
	c.routes.sp = nil
}

// learnedRoutes are the routes learned over CCP, for a routing table built for cfg.
func (c *Connector) learnedRoutes(cfg *config.Config) []routing.Route {
	sp := c.speaker()
	if sp == nil || !cfg.RouteBroadcastEnabled {
		return nil
	}
	return sp.Learned()
}

// handleCCP answers peer.route.control and peer.route.update from src.
func (c *Connector) handleCCP(ctx context.Context, src *account, p *ilp.Prepare) (*ilp.Fulfill, error) {
	sp := c.speaker()
	if sp == nil && c.Config().RouteBroadcastEnabled {
		// Enabled but not running yet: Start is asking a parent for our address (the Speaker
		// needs it), or Apply is about to start the Speaker. T03 tells the peer to retry.
		return nil, ilp.Rejectf(ilp.CodeConnectorBusy, c.self(),
			"route exchange is starting on this connector; send %s again shortly", p.Destination)
	}
	if sp == nil {
		return nil, ilp.Rejectf(ilp.CodeBadRequest, c.self(),
			"route broadcasting is disabled on this connector (CONNECTOR_ROUTE_BROADCAST_ENABLED=false); %s from account %s is ignored", p.Destination, src.id)
	}
	return sp.Handle(ctx, src.id, p)
}

// routingStatus is GET /routing: the Speaker's state, or the local table alone without CCP.
func (c *Connector) routingStatus() admin.RoutingInfo {
	if sp := c.speaker(); sp != nil {
		return sp.Status()
	}
	return admin.RoutingInfo{Local: c.Routes()}
}
