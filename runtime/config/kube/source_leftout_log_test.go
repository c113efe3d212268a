package kube

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/internal/testport"
)

// TestInForceAccountNotLoggedLeftOut: an Account that Build keeps in the config with a
// problem (here: its engine settles another asset, so it runs without settlement) is in
// force: the sync logs it as running, not fully applied — not as left out.
func TestInForceAccountNotLoggedLeftOut(t *testing.T) {
	eur := &ilpv1.SettlementEngine{ObjectMeta: metav1.ObjectMeta{Name: "eur", Namespace: "ns"},
		Spec: ilpv1.SettlementEngineSpec{AssetCode: "EUR", AssetScale: 9, Port: 3000}}
	usd := childOn("usd", 1, testport.Get(t))
	usd.Spec.SettlementEngineRef = "eur"
	f := newSyncFixture(t, time.Hour, testConnector(), usd, eur)
	res := f.sync()
	if res.Err != nil || !f.inForce("usd") {
		t.Fatalf("sync: %+v; want usd in force (without settlement)", res)
	}
	logs := f.logs.String()
	if strings.Contains(logs, `msg="object left out of the configuration" object="Account usd"`) ||
		!strings.Contains(logs, `msg="object runs, not fully applied" object="Account usd"`) {
		t.Errorf("an Account in force is not logged as running, not fully applied:\n%s", logs)
	}
}
