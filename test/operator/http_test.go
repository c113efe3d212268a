package operator

import (
	"context"
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// TestILPOverHTTPPeering: two Connectors peered over ILP-over-HTTP through their Accounts —
// B's Account serves incoming packets on a port, A's sends them to that port's URL — pay a
// packet from a child of A to a child of B, with the tokens read from Secrets through the Role
// the operator wrote. Once A's token no longer matches B's, B refuses A's packets (T01): the
// tokens are what the links use.
func TestILPOverHTTPPeering(t *testing.T) {
	ns := namespace(t)
	portHTTP, portAlice, portBob := freePort(t), freePort(t), freePort(t)
	inRef, outRef := &ilpv1.SecretKeyRef{Name: "in-token", Key: "token"}, &ilpv1.SecretKeyRef{Name: "out-token", Key: "token"}
	peer := func(conn, name string, h *ilpv1.HTTPLink) *ilpv1.Account {
		return &ilpv1.Account{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: ilpv1.AccountSpec{ConnectorRef: conn,
			Relation: ilpv1.RelationPeer, AssetCode: "USD", AssetScale: 9, Link: ilpv1.AccountLink{HTTP: h}}}
	}
	create(t,
		secretObj(ns, "in-token", "t-http"), secretObj(ns, "out-token", "t-http"),
		connectorObj(ns, "a", "test.a"), connectorObj(ns, "b", "test.b"),
		peer("b", "peer-a", &ilpv1.HTTPLink{Incoming: &ilpv1.HTTPIncoming{Port: portHTTP, TokenSecretRef: inRef}}),
		peer("a", "peer-b", &ilpv1.HTTPLink{Outgoing: &ilpv1.HTTPOutgoing{URL: fmt.Sprintf("http://127.0.0.1:%d/accounts/a/ilp", portHTTP), TokenSecretRef: outRef}}),
		childAccount(ns, "a", "alice", portAlice), childAccount(ns, "b", "bob", portBob),
		routeObj(ns, "a", "to-b", "test.b", "peer-b"),
	)
	startRuntime(t, ns, "b")
	configApplied(t, ns, "b", isTrue)
	startRuntime(t, ns, "a")
	configApplied(t, ns, "a", isTrue)
	rx := dialChild(t, portBob, "rx")
	tx := dialChild(t, portAlice, "tx")
	if err := tx.send(10, "test.b.bob.rx.paid"); err != nil {
		t.Fatalf("packet over ILP-over-HTTP: %v", err)
	}
	if rx.received.Load() != 1 {
		t.Fatalf("rx received %d packets, want 1", rx.received.Load())
	}

	sec := secretObj(ns, "out-token", "wrong")
	if err := k8s.Update(context.Background(), sec); err != nil {
		t.Fatal(err)
	}
	eventually(t, "B refusing A's new token", func() error {
		err := tx.send(10, "test.b.bob.rx.refused")
		if rejectCode(err) != ilp.CodePeerUnreachable {
			return fmt.Errorf("send: %v, want T01", err)
		}
		return nil
	})
}
