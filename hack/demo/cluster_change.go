package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/internal/fleetcheck"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// The live change: alice-sender's maxPacketAmount is lowered to newLimit while the pods run;
// a packet of newLimit+100 is then refused by alice with F08 Amount Too Large.
const (
	newLimit  = 500
	adminPort = 7780 // every connector pod's admin API, on the Service <connector>-admin
)

// changeLimit lowers alice-sender's maxPacketAmount live, waits until alice's pod refuses a
// packet above it with F08, pays at the new limit and shows the pods were not restarted.
func (f *clusterFleet) changeLimit(ctx context.Context, lg loadgen) error {
	patch := fmt.Sprintf(`{"spec":{"maxPacketAmount":"%d"}}`, newLimit)
	step("a live change: kubectl patch account alice-sender --type=merge -p '" + patch + "'")
	a := &ilpv1.Account{}
	a.Namespace, a.Name = namespace, "alice-sender"
	if err := f.c.Patch(ctx, a, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		return fmt.Errorf("patch Account alice-sender: %w", err)
	}
	if err := f.waitReady(ctx); err != nil {
		return err
	}
	if err := f.waitRefused(ctx, lg.sender); err != nil {
		return err
	}
	step(fmt.Sprintf("a packet at the new limit still goes through: 10 packets of %d", newLimit))
	if _, err := lg.run(ctx, 10, newLimit); err != nil {
		return err
	}
	step("the connector pods after the change (hot reload: no restart, no new pod)")
	return f.checkNoRestart(ctx)
}

// waitRefused sends single packets of newLimit+100 from alice-sender until alice refuses one
// with F08, and shows the rejection. Until alice's pod has applied the change a probe passes
// alice and is refused further on — nobody is connected to bob-receiver now and the probe's
// condition has no fulfillment — so no probe moves any balance.
func (f *clusterFleet) waitRefused(ctx context.Context, senderURL string) error {
	step(fmt.Sprintf("sending a packet of %d from alice-sender until alice's pod applies the change", newLimit+100))
	var rej *ilp.Reject
	var last error
	err := poll(ctx, statusTimeout, "alice to refuse a packet above the new limit with F08", nil, func() (bool, error) {
		last = fleetcheck.Probe(ctx, senderURL, destination, newLimit+100)
		return errors.As(last, &rej) && rej.Code == ilp.CodeAmountTooLarge, nil
	})
	if err != nil {
		return fmt.Errorf("%w (last probe: %v)", err, last)
	}
	received, maximum, _ := ilp.ParseAmountTooLargeData(rej.Data)
	fmt.Printf("    rejected: %s %s, triggered by %s: %q\n", rej.Code, rej.Code.Name(), rej.TriggeredBy, rej.Message)
	fmt.Printf("    (F08 data: amount received %d, maximum %d)\n", received, maximum)
	return nil
}

// showAdminBalances prints alice's balances as her running connector reports them on its
// admin API, through the Service alice-admin.
func (f *clusterFleet) showAdminBalances(ctx context.Context) error {
	url := fmt.Sprintf("http://%s:%d/balance", f.ip["alice-admin"], adminPort)
	step("alice's running connector, asked directly: curl " + url)
	body, err := httpGet(ctx, url)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	if json.Indent(&out, body, "", "  ") != nil {
		out.Reset()
		out.Write(body)
	}
	fmt.Print(indent(out.String(), "    "))
	return nil
}

// httpGet returns the body of a 200 answer to GET url.
func httpGet(ctx context.Context, url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return body, err
}

// lookAround prints the commands to look at the running fleet, with this cluster's paths and
// addresses filled in.
func (f *clusterFleet) lookAround(binary string, lg loadgen) {
	kc := kubectl
	step("look around (the node stays up until you press Enter; when stdin is not a terminal it\n" +
		"    is torn down right away):")
	fmt.Printf(`    export KUBECONFIG=%s
    %s get ilp -o wide
    %s get pods,svc,pvc -o wide
    %s describe account alice-sender
    %s logs -l app.kubernetes.io/component=connector --prefix --tail=20
    %s -n ilpfleet-system logs deploy/ilpfleet-controller-manager --tail=20
    curl http://%s:%d/balance      # alice's admin API (the Service alice-admin)
    curl http://%s:%d/status       # bob's: accounts, links, routes
    curl -s http://%s:%d/metrics | grep ^ilp_connector_
    %s loadgen -sender %s \
        -receiver %s -destination %s -n 100 -amount %d
`, f.kubeconfig, kc, kc, kc, kc, kc,
		f.ip["alice-admin"], adminPort, f.ip["bob-admin"], adminPort, f.ip["alice-admin"], adminPort,
		binary, lg.sender, lg.receiver, destination, newLimit)
}
