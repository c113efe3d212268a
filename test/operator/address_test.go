package operator

import (
	"context"
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
)

// TestInheritedAddressInStatus: a Connector that inherits its address from a parent shows the
// address the parent gave over IL-DCP in status.address (the Address printer column); the pod
// holding the Lease writes it, the operator leaves it alone.
func TestInheritedAddressInStatus(t *testing.T) {
	ns := namespace(t)
	port := freePort(t)
	kid := connectorObj(ns, "kid", "")
	kid.Spec.InheritAddressFrom = "up"
	create(t,
		secretObj(ns, "kid-token", "t1"),
		connectorObj(ns, "parent", "test.parent"), kid,
		&ilpv1.Account{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "kid"}, Spec: ilpv1.AccountSpec{ConnectorRef: "parent", Relation: ilpv1.RelationChild, AssetCode: "USD", AssetScale: 9,
			Link: ilpv1.AccountLink{BTPListener: &ilpv1.BTPListenerLink{Port: port, SecretRef: ilpv1.SecretKeyRef{Name: "kid-token", Key: "token"}}}}},
		&ilpv1.Account{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "up"}, Spec: ilpv1.AccountSpec{ConnectorRef: "kid", Relation: ilpv1.RelationParent, AssetCode: "USD", AssetScale: 9,
			Link: ilpv1.AccountLink{BTPClient: &ilpv1.BTPClientLink{URL: fmt.Sprintf("btp+ws://127.0.0.1:%d", port), TokenSecretRef: ilpv1.SecretKeyRef{Name: "kid-token", Key: "token"}}}}},
	)
	startRuntime(t, ns, "parent")
	configApplied(t, ns, "parent", isTrue)
	startRuntime(t, ns, "kid")
	configApplied(t, ns, "kid", isTrue)
	eventually(t, "status.address of kid", func() error {
		var c ilpv1.Connector
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "kid"}, &c); err != nil {
			return err
		}
		if c.Status.Address != "test.parent.kid" {
			return fmt.Errorf("status.address = %q, want test.parent.kid", c.Status.Address)
		}
		return nil
	})
}
