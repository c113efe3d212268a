package kube

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/internal/testport"
)

// TestParentLinkFailureIsReported: the parent an address is inherited from cannot be left out
// for its link (the config would have no parent): the sync reports the link's failure, not an
// invalid Connector, records nothing to leave out, and is scheduled to run again.
func TestParentLinkFailureIsReported(t *testing.T) {
	taken, _ := takenPort(t)
	conn := testConnector()
	conn.Spec.ILPAddress = ""
	up := account("up", 1, func(s *ilpv1.AccountSpec) {
		s.Relation = ilpv1.RelationParent
		s.Link = ilpv1.AccountLink{BTPListener: &ilpv1.BTPListenerLink{Port: int32(taken), SecretRef: ilpv1.SecretKeyRef{Name: "sec", Key: "t"}}}
	})
	up.UID, up.Generation = types.UID("uid-up"), 1
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "sec", Namespace: "ns"}, Data: map[string][]byte{"t": []byte("s3cret")}}
	f := newSyncFixture(t, time.Hour, conn, &up, sec)
	var res SyncResult
	f.src.opts.OnSync = func(r SyncResult) { res = r }
	retryIn := f.src.sync(f.ctx)
	if res.Err == nil || !strings.Contains(res.Err.Error(), "bind") {
		t.Errorf("sync error %v; want the parent's link failure", res.Err)
	}
	if len(f.src.linkFailed) != 0 {
		t.Errorf("left out for their links: %v; want none (the parent cannot be)", f.src.linkFailed)
	}
	if retryIn == 0 {
		t.Error("no retry scheduled")
	}
}

// TestDueLinkRetryKeepsRetryRefused: an Account left out for its link is tried again once due;
// when that attempt is refused for another reason (an address change the running connector
// cannot take), the next try is RetryRefused away again — not due at every sync, which made a
// refused config rebuilt and applied again every second.
func TestDueLinkRetryKeepsRetryRefused(t *testing.T) {
	taken, _ := takenPort(t)
	conn := testConnector()
	f := newSyncFixture(t, time.Hour, conn, childOn("good", 1, testport.Get(t)), childOn("bad", 2, taken))
	if res := f.sync(); !leftOut(res, "bad") {
		t.Fatalf("first sync: %+v; want bad left out", res)
	}
	f.src.linkFailed["bad"].retryAt = time.Now().Add(-time.Minute) // due
	conn.Spec.ILPAddress = "test.other"
	if err := f.cl.Update(f.ctx, conn); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if d := f.src.sync(f.ctx); d < 59*time.Minute {
			t.Errorf("sync %d of a refused config: run again in %v; want about RetryRefused (1h)", i, d)
		}
	}
}

// TestPortClashFixedAtOnce: two Accounts on one port — the younger is left out — and then the
// older moves to another port, the usual fix. The runtime starts added links before it closes
// old ones, so the apply that frees the port cannot give it to the younger Account: it is
// left out for its link in that apply, and tried again at once once the move is in force,
// not RetryRefused later.
func TestPortClashFixedAtOnce(t *testing.T) {
	port := testport.Get(t)
	pe, pf := childOn("pe", 1, port), childOn("pf", 2, port)
	f := newSyncFixture(t, time.Hour, testConnector(), pe, pf)
	if res := f.sync(); res.Err != nil || !f.inForce("pe") || f.inForce("pf") {
		t.Fatalf("first sync: %+v; want pe in force and pf left out for the clash", res)
	}
	pe.Spec.Link.BTPChildServer.Port = int32(testport.Get(t))
	pe.Generation++
	if err := f.cl.Update(f.ctx, pe); err != nil {
		t.Fatal(err)
	}
	res := f.sync()
	if res.Err != nil || !f.inForce("pe") || !f.inForce("pf") || len(f.src.linkFailed) != 0 {
		t.Errorf("after the move: err %v, problems %v; want pe and pf in force", res.Err, res.Problems)
	}
}
