package fleetcheck

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/internal/scheme"
	"github.com/ilpfleet/ilpfleet/runtime/btp"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

func pod(name, conn string, restarts int32, started *time.Time) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("uid-" + name[len(name)-1:]),
		Labels: map[string]string{"app.kubernetes.io/component": "connector", ilpv1.LabelConnector: conn}}}
	cs := corev1.ContainerStatus{Name: "connector", RestartCount: restarts}
	if started != nil {
		cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(*started)}
	}
	p.Status.ContainerStatuses = []corev1.ContainerStatus{cs}
	return p
}

func TestConnectorPods(t *testing.T) {
	at := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	deleting := pod("alice-old", "alice", 0, &at)
	deleting.DeletionTimestamp, deleting.Finalizers = &metav1.Time{Time: at}, []string{"test/keep"}
	other := pod("web-1", "", 0, &at)
	other.Labels = map[string]string{"app.kubernetes.io/component": "web"}
	tests := []struct {
		name string
		pods []client.Object
		want map[string]PodID
	}{
		{"one pod each", []client.Object{pod("alice-0", "alice", 0, &at), pod("bob-1", "bob", 2, nil)}, map[string]PodID{
			"alice": {Name: "alice-0", UID: "uid-0", Started: "2026-12-06T03:00:00Z"},
			"bob":   {Name: "bob-1", UID: "uid-1", Restarts: 2, Started: "not running"},
		}},
		{"a pod being deleted and other components are left out", []client.Object{deleting, other, pod("alice-0", "alice", 1, &at)}, map[string]PodID{
			"alice": {Name: "alice-0", UID: "uid-0", Restarts: 1, Started: "2026-12-06T03:00:00Z"},
		}},
		{"two pods of one Connector", []client.Object{pod("bob-1", "bob", 0, &at), pod("bob-2", "bob", 0, &at)}, map[string]PodID{"bob": Several}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(tt.pods...).Build()
			got, err := ConnectorPods(context.Background(), c, "ns")
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestProbe(t *testing.T) {
	tests := []struct {
		name     string
		answer   ilp.Handler
		wantCode ilp.ErrorCode // "": fulfilled
	}{
		{"refused", func(_ context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
			return nil, ilp.Rejectf(ilp.CodeAmountTooLarge, "test.alice", "amount %d too large", p.Amount)
		}, ilp.CodeAmountTooLarge},
		{"fulfilled", func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) {
			return &ilp.Fulfill{Fulfillment: [32]byte{7}}, nil
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got *ilp.Prepare
			srv, err := btp.NewPeerServer(btp.PeerServerOptions{Host: "127.0.0.1", Secret: "s3cret",
				Common: btp.Common{Logger: slog.New(slog.DiscardHandler)}})
			if err != nil {
				t.Fatal(err)
			}
			if err := srv.Start(context.Background(), func(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
				got = p
				return tt.answer(ctx, p)
			}); err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			err = Probe(context.Background(), fmt.Sprintf("btp+ws://u:s3cret@%s", srv.Addr()), "test.bob.x", 600)
			var rej *ilp.Reject
			switch {
			case tt.wantCode == "" && err != nil:
				t.Fatalf("Probe: %v, want fulfilled", err)
			case tt.wantCode != "" && (!errors.As(err, &rej) || rej.Code != tt.wantCode):
				t.Fatalf("Probe: %v, want a Reject %s", err, tt.wantCode)
			}
			if got == nil || got.Amount != 600 || got.Destination != "test.bob.x" {
				t.Fatalf("the server got %+v", got)
			}
		})
	}
}
