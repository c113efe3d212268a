// Package fleetcheck looks at a running fleet from outside the cluster, for the end-to-end test
// (test/e2e) and the real-node demo (hack/demo --cluster): the identities of the connector pods,
// which show that a hot reload restarted nothing, and a single probe packet sent through a BTP
// account, which shows what a connector does with it now.
package fleetcheck

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/runtime/btp"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// PodID is what changes when a pod is replaced (UID) or its container restarts (restart count,
// and the start time of the running container: a container that died and was not restarted
// yet shows as not running).
type PodID struct {
	Name     string
	UID      types.UID
	Restarts int32
	Started  string
}

func (p PodID) String() string {
	return fmt.Sprintf("%s (uid %s, restarts %d, started %s)", p.Name, p.UID, p.Restarts, p.Started)
}

// Several is the PodID of a Connector that has more than one pod.
var Several = PodID{Name: "several"}

// ConnectorPods returns the connector pods of namespace ns that are not being deleted, by
// Connector (label ilp.ilpfleet.dev/connector); a Connector with several pods maps to Several.
func ConnectorPods(ctx context.Context, c client.Client, ns string) (map[string]PodID, error) {
	var pods corev1.PodList
	if err := c.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{"app.kubernetes.io/component": "connector"}); err != nil {
		return nil, err
	}
	out := map[string]PodID{}
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		id := PodID{Name: p.Name, UID: p.UID, Started: "not running"}
		for _, cs := range p.Status.ContainerStatuses {
			id.Restarts += cs.RestartCount
			if r := cs.State.Running; r != nil {
				id.Started = r.StartedAt.UTC().Format(time.RFC3339)
			}
		}
		conn := p.Labels[ilpv1.LabelConnector]
		if _, dup := out[conn]; dup {
			id = Several
		}
		out[conn] = id
	}
	return out, nil
}

// Probe connects to the BTP account at senderURL, sends one packet of amount to destination
// and returns how it ended: nil when fulfilled, an *ilp.Reject when refused. The callers send
// it where no receiver fulfills it (the load generator fulfills only the packets of its own
// run), so a probe moves no balance for good.
func Probe(ctx context.Context, senderURL string, destination ilp.Address, amount uint64) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	cl, err := Dial(ctx, senderURL)
	if err != nil {
		return err
	}
	defer cl.Close()
	_, err = cl.Send(ctx, &ilp.Prepare{Amount: amount, ExpiresAt: time.Now().Add(10 * time.Second),
		ExecutionCondition: ilp.ConditionOf([32]byte{7}), Destination: destination})
	return err
}

// Dial connects and authenticates to the BTP account at url, within ctx, as a client that
// takes no packets; the caller closes it. A refused auth is its error.
func Dial(ctx context.Context, url string) (*btp.Client, error) {
	cl, err := btp.NewClient(btp.ClientOptions{Server: url, Common: btp.Common{Logger: slog.New(slog.DiscardHandler)}})
	if err != nil {
		return nil, err
	}
	if err := cl.Start(ctx, func(context.Context, *ilp.Prepare) (*ilp.Fulfill, error) {
		return nil, errors.New("the probe receives nothing")
	}); err != nil {
		_ = cl.Close()
		return nil, err
	}
	return cl, nil
}
