package controllers

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
)

// replicatedConnector is a Connector named name with the given replicas, on the redis store
// (which CEL requires for more than one).
func replicatedConnector(ns, name string, replicas int32) *ilpv1.Connector {
	c := sampleConnector(ns)
	c.Name, c.Spec.ILPAddress = name, "test."+name
	c.Spec.Replicas = ptr.To(replicas)
	c.Spec.Store = &ilpv1.StoreSpec{Type: ilpv1.StoreRedis, Redis: &ilpv1.RedisStoreSpec{URLSecretRef: ilpv1.SecretKeyRef{Name: "redis", Key: "url"}}}
	return c
}

// TestAccountReplicasSupported: an Account whose link holds state only one pod can have (a BTP
// connection, the replies of http mode async), or a sync ILP-over-HTTP Account that exchanges
// routes over CCP (per pod: sendRoutes or receiveRoutes in effect, unset true but for a child,
// and the Connector's routing.broadcast not false), on a Connector with replicas > 1 is not
// Ready, with ReplicasSupported False saying why, and one Warning Event on the Connector; sync
// ILP-over-HTTP without route exchange works with any replicas; the condition clears when the
// link becomes http, route exchange stops, or the Connector goes back to one replica.
func TestAccountReplicasSupported(t *testing.T) {
	ns := namespace(t)
	quiet := replicatedConnector(ns, "quiet", 3)
	quiet.Spec.Routing = &ilpv1.RoutingSpec{Broadcast: ptr.To(false)}
	mustCreate(t, secret(ns, "bob", map[string]string{"secret": "s", "in": "i", "out": "o"}), secret(ns, "redis", map[string]string{"url": "redis://redis:6379/0"}),
		replicatedConnector(ns, "one", 1), replicatedConnector(ns, "three", 3), quiet)

	btpClient := func() ilpv1.AccountLink {
		return ilpv1.AccountLink{BTPClient: &ilpv1.BTPClientLink{URL: "btp+ws://peer:7768", TokenSecretRef: ilpv1.SecretKeyRef{Name: "bob", Key: "secret"}}}
	}
	listener := func(port int32) ilpv1.AccountLink {
		return ilpv1.AccountLink{BTPListener: &ilpv1.BTPListenerLink{Port: port, SecretRef: ilpv1.SecretKeyRef{Name: "bob", Key: "secret"}}}
	}
	mini := func(port int32) ilpv1.AccountLink {
		return ilpv1.AccountLink{BTPChildServer: &ilpv1.BTPChildServerLink{Port: port}}
	}
	httpSync := func(port int32) ilpv1.AccountLink {
		return ilpv1.AccountLink{HTTP: &ilpv1.HTTPLink{Incoming: httpIn(port), Outgoing: httpOut("https://peer.example/ilp")}}
	}
	out := httpOut("https://peer.example/ilp")
	out.CallbackURL = "http://three:7808/ilp/callback"
	httpAsync := ilpv1.AccountLink{HTTP: &ilpv1.HTTPLink{Mode: ilpv1.HTTPModeAsync, Incoming: httpIn(7808), Outgoing: out}}

	const (
		yes, no, unknown = metav1.ConditionTrue, metav1.ConditionFalse, metav1.ConditionUnknown
	)
	off, on := ptr.To(false), ptr.To(true)
	cases := []struct {
		account, connector string
		link               ilpv1.AccountLink
		relation           ilpv1.Relation // "": peer
		send, receive      *bool          // sendRoutes, receiveRoutes
		status             metav1.ConditionStatus
		reason, mentions   string
	}{
		{"client-1", "one", btpClient(), "", nil, nil, yes, ReasonReplicasSupported, "one replica"},
		{"client-3", "three", btpClient(), "", nil, nil, no, ReasonSingleConnectionLink, "link.btpClient is one WebSocket connection, which only one of the Connector's replicas can hold"},
		{"listener-1", "one", listener(7801), "", nil, nil, yes, ReasonReplicasSupported, "one replica"},
		{"listener-3", "three", listener(7802), "", nil, nil, no, ReasonSingleConnectionLink, "link.btpListener is one WebSocket connection, which only one of the Connector's replicas can hold"},
		// A BTP link is reported as such, whether or not it exchanges routes too.
		{"listener-3-noccp", "three", listener(7812), "", off, off, no, ReasonSingleConnectionLink, "link.btpListener"},
		{"mini-1", "one", mini(7803), "", nil, nil, yes, ReasonReplicasSupported, "one replica"},
		{"mini-3", "three", mini(7804), "", nil, nil, no, ReasonSingleConnectionLink, "link.btpChildServer holds one WebSocket connection per child"},
		// Sync ILP-over-HTTP: fine with replicas unless the account exchanges routes (CCP),
		// which sendRoutes and receiveRoutes decide, unset true but for a child.
		{"http-1", "one", httpSync(7805), "", off, off, yes, ReasonReplicasSupported, "one replica"},
		{"http-ccp-1", "one", httpSync(7813), "", nil, nil, yes, ReasonReplicasSupported, "one replica"},
		{"http-3", "three", httpSync(7806), "", off, off, yes, ReasonReplicasSupported, "any of the Connector's replicas"},
		{"http-ccp-3", "three", httpSync(7814), "", nil, nil, no, ReasonRouteExchangePerPod, "sendRoutes unset: true for a peer, receiveRoutes unset: true for a peer"},
		{"http-send-3", "three", httpSync(7815), "", on, off, no, ReasonRouteExchangePerPod, "sendRoutes: true, receiveRoutes: false"},
		{"http-receive-3", "three", httpSync(7816), "", off, nil, no, ReasonRouteExchangePerPod, "sendRoutes: false, receiveRoutes unset: true for a peer"},
		{"http-parent-3", "three", httpSync(7817), ilpv1.RelationParent, nil, nil, no, ReasonRouteExchangePerPod,
			"Set sendRoutes: false and receiveRoutes: false on this Account and on the peer's side of the link, and declare the routes through http-parent-3 as Routes"},
		{"http-child-3", "three", httpSync(7818), ilpv1.RelationChild, nil, nil, yes, ReasonReplicasSupported, "any of the Connector's replicas"},
		{"http-child-send-3", "three", httpSync(7819), ilpv1.RelationChild, on, nil, no, ReasonRouteExchangePerPod, "sendRoutes: true, receiveRoutes unset: false for a child"},
		// spec.routing.broadcast false: the pods exchange no routes at all.
		{"http-quiet-3", "quiet", httpSync(7820), "", nil, nil, yes, ReasonReplicasSupported, "any of the Connector's replicas"},
		{"async-3", "three", httpAsync, "", nil, nil, no, ReasonAsyncHTTPLink, "Use mode sync, or set the Connector's replicas to 1"},
		{"orphan", "nobody", btpClient(), "", nil, nil, unknown, ReasonConnectorNotFound, `Connector "nobody" does not exist`},
	}
	accounts := map[string]*ilpv1.Account{}
	for _, tc := range cases {
		a := sampleAccount(ns, tc.account, tc.connector)
		a.Spec.Link, a.Spec.SendRoutes, a.Spec.ReceiveRoutes = tc.link, tc.send, tc.receive
		if tc.relation != "" {
			a.Spec.Relation = tc.relation
		}
		mustCreate(t, a)
		accounts[tc.account] = a
	}
	for _, tc := range cases {
		a := accounts[tc.account]
		c := waitCondition(t, a, ilpv1.ConditionReplicasSupported, tc.status, tc.reason)
		if !strings.Contains(c.Message, tc.mentions) {
			t.Errorf("%s: ReplicasSupported message %q does not say %q", tc.account, c.Message, tc.mentions)
		}
		switch tc.status {
		case yes:
			waitCondition(t, a, ilpv1.ConditionReady, metav1.ConditionTrue, ReasonResolved)
		case no:
			ready := waitCondition(t, a, ilpv1.ConditionReady, metav1.ConditionFalse, tc.reason)
			if ready.Message != c.Message {
				t.Errorf("%s: Ready message %q, want ReplicasSupported's %q", tc.account, ready.Message, c.Message)
			}
			if r := meta.FindStatusCondition(a.Status.Conditions, ilpv1.ConditionReferencesResolved); r == nil || r.Status != metav1.ConditionTrue {
				t.Errorf("%s: ReferencesResolved = %+v, want True: the references do resolve", tc.account, r)
			}
			ev := waitRelatedEvent(t, ns, "three", tc.account, tc.reason)
			if ev.Type != corev1.EventTypeWarning || ev.Regarding.Kind != "Connector" || !strings.Contains(ev.Note, c.Message) {
				t.Errorf("%s: Event %s %s about %s %q, want a Warning about the Connector with the condition's message", tc.account, ev.Type, ev.Reason, ev.Regarding.Kind, ev.Note)
			}
		case unknown:
			waitCondition(t, a, ilpv1.ConditionReady, metav1.ConditionFalse, ReasonConnectorNotFound)
		}
	}

	// The link becomes sync ILP-over-HTTP: supported once it exchanges no routes either.
	update(t, accounts["client-3"], func(a *ilpv1.Account) { a.Spec.Link = httpSync(7809) })
	waitCondition(t, accounts["client-3"], ilpv1.ConditionReplicasSupported, no, ReasonRouteExchangePerPod)
	waitCondition(t, accounts["client-3"], ilpv1.ConditionReady, no, ReasonRouteExchangePerPod)
	waitRelatedEvent(t, ns, "three", "client-3", ReasonRouteExchangePerPod)
	update(t, accounts["client-3"], func(a *ilpv1.Account) { a.Spec.SendRoutes, a.Spec.ReceiveRoutes = off, off })
	waitCondition(t, accounts["client-3"], ilpv1.ConditionReplicasSupported, yes, ReasonReplicasSupported)
	waitCondition(t, accounts["client-3"], ilpv1.ConditionReady, yes, ReasonResolved)

	// The Connector turns route broadcasting off: no account of it exchanges routes.
	update(t, replicatedConnector(ns, "three", 3), func(c *ilpv1.Connector) { c.Spec.Routing = &ilpv1.RoutingSpec{Broadcast: ptr.To(false)} })
	waitCondition(t, accounts["http-ccp-3"], ilpv1.ConditionReplicasSupported, yes, ReasonReplicasSupported)
	waitCondition(t, accounts["http-ccp-3"], ilpv1.ConditionReady, yes, ReasonResolved)

	// The Connector goes from 3 replicas to 1: every Account of it is Ready again.
	update(t, replicatedConnector(ns, "three", 3), func(c *ilpv1.Connector) { c.Spec.Replicas = ptr.To[int32](1) })
	// (The http ones were True already, with the message about several replicas: wait for the new one.)
	for _, name := range []string{"listener-3", "mini-3", "async-3", "http-3", "http-send-3", "http-parent-3"} {
		eventually(t, func() error {
			c := waitCondition(t, accounts[name], ilpv1.ConditionReplicasSupported, yes, ReasonReplicasSupported)
			return checkf(strings.Contains(c.Message, "one replica"), name+": ReplicasSupported message after scaling to 1: "+c.Message)
		})
		waitCondition(t, accounts[name], ilpv1.ConditionReady, yes, ReasonResolved)
	}
}

// waitRelatedEvent waits for an Event about the Connector conn, related to the Account, with the reason.
func waitRelatedEvent(t *testing.T, ns, conn, account, reason string) eventsv1.Event {
	t.Helper()
	return waitEventWhere(t, ns, fmt.Sprintf("%s about Connector %s related to Account %s", reason, conn, account),
		func(e eventsv1.Event) bool {
			return e.Regarding.Name == conn && e.Related != nil && e.Related.Name == account && e.Reason == reason
		})
}

// TestRouteExchangeDefaults: whether the operator counts an Account as exchanging routes is
// what the runtime does with the same settings (config.Account.SendsRoutes/ReceivesRoutes, JS
// defaults per relation), and the Connector's spec.routing.broadcast turns it off entirely.
func TestRouteExchangeDefaults(t *testing.T) {
	bools := []*bool{nil, ptr.To(false), ptr.To(true)}
	for _, rel := range []ilpv1.Relation{ilpv1.RelationParent, ilpv1.RelationPeer, ilpv1.RelationChild} {
		for _, send := range bools {
			for _, recv := range bools {
				for _, broadcast := range bools {
					a := sampleAccount("ns", "x", "c")
					a.Spec.Relation, a.Spec.SendRoutes, a.Spec.ReceiveRoutes = rel, send, recv
					a.Spec.Link = ilpv1.AccountLink{HTTP: &ilpv1.HTTPLink{Incoming: httpIn(7800), Outgoing: httpOut("https://peer.example/ilp")}}
					c := replicatedConnector("ns", "c", 3)
					if broadcast != nil {
						c.Spec.Routing = &ilpv1.RoutingSpec{Broadcast: broadcast}
					}
					defaultOn := rel != ilpv1.RelationChild
					want := ptr.Deref(broadcast, true) && (ptr.Deref(send, defaultOn) || ptr.Deref(recv, defaultOn))
					p := replicasProblem(a, c)
					if got := p != nil && p.reason == ReasonRouteExchangePerPod; got != want || (p != nil && !got) {
						t.Errorf("%s sendRoutes=%v receiveRoutes=%v broadcast=%v: problem %+v, want RouteExchangePerPod %t",
							rel, fmtBool(send), fmtBool(recv), fmtBool(broadcast), p, want)
					}
					if p := replicasProblem(a, replicatedConnector("ns", "c", 1)); p != nil {
						t.Errorf("%s with one replica: %+v", rel, p)
					}
				}
			}
		}
	}
}

func fmtBool(b *bool) string {
	if b == nil {
		return "unset"
	}
	return fmt.Sprint(*b)
}
