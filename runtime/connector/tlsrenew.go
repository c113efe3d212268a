package connector

import (
	"fmt"

	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/tlsopt"
)

// tlsRenewer is a link that listens with TLS it can renew in place: a BTP listener or child
// server, or an ILP-over-HTTP incoming server. ServerTLS is nil when it serves no TLS.
type tlsRenewer interface {
	ServerTLS() *tlsopt.Server
}

// renewal is a reload that changes only the certificate or key of an account's listener
// (config.AccountChange.RenewTLS; a change of its client CA reconnects): the new material,
// checked in plan, goes in force in commit (Server.Renew) for the link's new handshakes; its
// connections stay open.
type renewal struct {
	running *tlsopt.Server // the link's
	next    *tlsopt.Server // from the new options
}

// planRenewal reads the new listening TLS of a running account whose link can take it in place;
// ok false when it cannot, which then reconnects: a link that is down (DownLinks: its restart
// failed, so it is closed, and renewing it would leave it so) or one built otherwise (as by
// tests).
func (c *Connector) planRenewal(a *account, ac config.Account) (r renewal, ok bool, err error) {
	l, isRenewer := a.link.(tlsRenewer)
	if !isRenewer || l.ServerTLS() == nil || c.isDown(a.id) {
		return renewal{}, false, nil
	}
	next, err := ac.ListenerTLS()
	if err != nil {
		return renewal{}, false, fmt.Errorf("connector: account %s: %w", a.id, err)
	}
	if next == nil { // config.Diff saw the tls object in both
		return renewal{}, false, nil
	}
	return renewal{running: l.ServerTLS(), next: next}, true, nil
}

// isDown reports whether the account id's link is down (DownLinks).
func (c *Connector) isDown(id string) bool {
	c.downMu.Lock()
	defer c.downMu.Unlock()
	_, down := c.down[id]
	return down
}
