package controllers

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/runtime/config"
)

// Reasons of an Account's ReplicasSupported condition (and of its Ready when False).
const (
	// ReasonReplicasSupported: the link works with the Connector's replicas.
	ReasonReplicasSupported = "ReplicasSupported"
	// ReasonSingleConnectionLink: a BTP link (btpClient, btpListener, btpChildServer) is one
	// WebSocket connection per peer or child, which only one of several replicas can hold.
	ReasonSingleConnectionLink = "SingleConnectionLink"
	// ReasonAsyncHTTPLink: an http link in mode async awaits each reply in the replica that
	// sent the Prepare, while the peer's callback reaches any replica.
	ReasonAsyncHTTPLink = "AsyncHTTPLink"
	// ReasonRouteExchangePerPod: the Account exchanges routes over CCP, which each replica
	// does on its own (its own routing table ID, the updates that reach it).
	ReasonRouteExchangePerPod = "RouteExchangePerPod"
)

// onePodLink reports whether only one pod at a time can serve the link: a BTP link (one
// WebSocket connection per peer or child) or an http link in mode async (each reply awaited in
// the pod that sent the Prepare). These are the links replicasProblem refuses with several
// replicas, and those for which a single replica's rollout must not overlap the old pod with
// the new one (deploymentStrategy).
func onePodLink(l ilpv1.AccountLink) bool {
	return l.BTPClient != nil || l.BTPListener != nil || l.BTPChildServer != nil ||
		(l.HTTP != nil && l.HTTP.Mode == ilpv1.HTTPModeAsync)
}

// replicasProblem says why the Account's link does not work with the Connector's replicas, or
// nil when it does. Only state the runtime keeps in one pod matters: balances and settlements
// live in the shared store (CEL refuses replicas > 1 without redis), and an ILP-over-HTTP
// request in mode sync is answered by whichever replica it reaches; but route exchange (CCP)
// over that link is per pod. The message says that there are several replicas, never how
// many: scaling among counts above one then changes neither the Account's status nor sends
// another Event (warnReplicas).
func replicasProblem(acct *ilpv1.Account, conn *ilpv1.Connector) *refProblem {
	if replicasOf(conn) <= 1 {
		return nil
	}
	const fix = "Link this peer over ILP-over-HTTP (link.http, mode sync), or set the Connector's replicas to 1"
	l := acct.Spec.Link
	switch {
	case l.BTPClient != nil:
		return &refProblem{ReasonSingleConnectionLink, "link.btpClient is one WebSocket connection, which only one of the Connector's replicas can hold: " +
			"each replica dials the peer and the peer keeps only the newest connection, so the replicas replace each other's connection " +
			"and the replies on a replaced one are lost. " + fix}
	case l.BTPListener != nil:
		return &refProblem{ReasonSingleConnectionLink, fmt.Sprintf("link.btpListener is one WebSocket connection, which only one of the Connector's replicas can hold: "+
			"the peer's connection lands on one pod, and packets for the peer that reach any other replica are rejected "+
			"(T01, no connection to account %s). %s", acct.Name, fix)}
	case l.BTPChildServer != nil:
		return &refProblem{ReasonSingleConnectionLink, "link.btpChildServer holds one WebSocket connection per child, each on only one of the Connector's replicas: " +
			"packets for a child that reach another replica are rejected (no child connected there). " +
			"Link children over ILP-over-HTTP (an Account with link.http, mode sync, each), or set the Connector's replicas to 1"}
	case l.HTTP != nil && l.HTTP.Mode == ilpv1.HTTPModeAsync:
		return &refProblem{ReasonAsyncHTTPLink, "link.http in mode async has the peer POST each reply to outgoing.callbackURL, which reaches any of the Connector's replicas, " +
			"while only the replica that sent the Prepare awaits it: another replica refuses the reply (unknown Request-Id) and the Prepare expires unanswered. " +
			"Use mode sync, or set the Connector's replicas to 1"}
	}
	if exchanges, how := routeExchange(acct, conn); exchanges {
		return &refProblem{ReasonRouteExchangePerPod, fmt.Sprintf("the account exchanges routes over CCP (%s), which each of the Connector's replicas does on its own, "+
			"with its own routing table ID and only the route updates that happen to reach it: the peer drops our routes at each switch between replicas, "+
			"and each replica knows only part of the peer's. Set sendRoutes: false and receiveRoutes: false on this Account and on the peer's side of the link, "+
			"and declare the routes through %s as Routes; or set the Connector's replicas to 1", how, acct.Name)}
	}
	return nil
}

// routeExchange reports whether the pods exchange routes with the Account over CCP, as the
// runtime decides it (config.Account.SendsRoutes and ReceivesRoutes: sendRoutes and
// receiveRoutes, unset true but for a child; none while the Connector's
// spec.routing.broadcast is false), and says which setting makes it so.
func routeExchange(acct *ilpv1.Account, conn *ilpv1.Connector) (bool, string) {
	broadcast := config.Defaults().RouteBroadcastEnabled
	if r := conn.Spec.Routing; r != nil && r.Broadcast != nil {
		broadcast = *r.Broadcast
	}
	s := acct.Spec
	ac := config.Account{Relation: config.Relation(s.Relation), SendRoutes: s.SendRoutes, ReceiveRoutes: s.ReceiveRoutes}
	send, recv := ac.SendsRoutes(), ac.ReceivesRoutes()
	if !broadcast || (!send && !recv) {
		return false, ""
	}
	describe := func(name string, set *bool, on bool) string {
		if set != nil {
			return fmt.Sprintf("%s: %t", name, on)
		}
		return fmt.Sprintf("%s unset: %t for a %s", name, on, s.Relation)
	}
	return true, describe("sendRoutes", s.SendRoutes, send) + ", " + describe("receiveRoutes", s.ReceiveRoutes, recv)
}

// setReplicasSupported writes the Account's ReplicasSupported condition: False with p, the
// replicasProblem of the Account on conn; Unknown when conn is nil (the Connector does not
// exist, so neither do its replicas); else True, with a message that tells zero, one and
// several replicas apart, not how many.
func setReplicasSupported(acct *ilpv1.Account, conn *ilpv1.Connector, p *refProblem) {
	st := &acct.Status.BaseStatus
	switch {
	case conn == nil:
		setConditionStatus(acct, st, ilpv1.ConditionReplicasSupported, metav1.ConditionUnknown, ReasonConnectorNotFound,
			fmt.Sprintf("Connector %q does not exist, so its replicas are not known", acct.Spec.ConnectorRef))
		return
	case p != nil:
		setCondition(acct, st, ilpv1.ConditionReplicasSupported, false, p.reason, p.msg)
		return
	}
	var msg string
	switch n := replicasOf(conn); {
	case n == 0:
		msg = "the Connector is scaled to zero replicas"
	case n == 1:
		msg = "the Connector runs one replica, which holds all of the link's state"
	default: // only http in mode sync without route exchange has no problem with several
		msg = "link.http in mode sync is stateless and the account exchanges no routes over CCP: any of the Connector's replicas answers any request"
	}
	setCondition(acct, st, ilpv1.ConditionReplicasSupported, true, ReasonReplicasSupported, msg)
}
