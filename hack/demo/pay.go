package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
)

// The payment the demo makes: packets × amount from alice-sender, through alice and bob, to
// bob-receiver. alice's spread (0.002, from the sample) takes 2 units of every 1000.
const (
	packets     = 200
	concurrency = 10
	amount      = 1000
	destination = "test.bob.bob-receiver"
)

// paymentAccounts are the Accounts (and their Secret) the demo adds while the runtimes run:
// one child account on each connector, each a BTP listener that the load generator dials.
const paymentAccounts = `apiVersion: v1
kind: Secret
metadata:
  name: demo-payment-btp
stringData:
  sender: sender-secret
  receiver: receiver-secret
---
apiVersion: ilp.ilpfleet.dev/v1alpha1
kind: Account
metadata:
  name: alice-sender
spec:
  connectorRef: alice
  relation: child
  assetCode: USD
  assetScale: 9
  link:
    btpListener:
      port: {{sender}}
      secretRef: {name: demo-payment-btp, key: sender}
  balance: {minimum: "-1000000000", maximum: "1000000000"}
---
apiVersion: ilp.ilpfleet.dev/v1alpha1
kind: Account
metadata:
  name: bob-receiver
spec:
  connectorRef: bob
  relation: child
  assetCode: USD
  assetScale: 9
  link:
    btpListener:
      port: {{receiver}}
      secretRef: {name: demo-payment-btp, key: receiver}
  balance: {minimum: "-1000000000", maximum: "1000000000"}
`

// pay adds the payment accounts live, waits until the runtimes run them and a route from
// alice to bob is known, sends the payment with `ilpfleet loadgen` and shows the balances the
// runtimes report.
func pay(ctx context.Context, c client.Client, binary, kubeconfig string, p *ports, runtimes []*process) error {
	if err := addPaymentAccounts(ctx, c, p.sender, p.receiver, runtimes); err != nil {
		return err
	}
	for i, name := range connectors {
		cond, err := waitConfigApplied(ctx, c, name, runtimes[i])
		if err != nil {
			return err
		}
		fmt.Printf("    Connector %s: %s\n", name, cond.Message)
	}
	lg := loadgen{binary: binary, sender: fmt.Sprintf("btp+ws://demo:sender-secret@127.0.0.1:%d", p.sender),
		receiver: fmt.Sprintf("btp+ws://demo:receiver-secret@127.0.0.1:%d", p.receiver), wait: 30 * time.Second}
	return payThrough(ctx, c, lg, kubeconfig, runtimes)
}

// addPaymentAccounts applies paymentAccounts (the sender listening on senderPort of alice,
// the receiver on receiverPort of bob) and waits until the runtimes run both: they report
// status.balance once they do.
func addPaymentAccounts(ctx context.Context, c client.Client, senderPort, receiverPort int, runtimes []*process) error {
	step("adding two Accounts live (kubectl apply -f -), one child account on each connector:")
	doc := strings.NewReplacer("{{sender}}", strconv.Itoa(senderPort), "{{receiver}}", strconv.Itoa(receiverPort)).Replace(paymentAccounts)
	fmt.Print(indent(doc, "    | "))
	if err := applyYAML(ctx, c, []byte(doc), nil); err != nil {
		return err
	}
	step("waiting for the runtimes to run the new Accounts (they report status.balance once they do)")
	for _, name := range []string{"alice-sender", "bob-receiver"} {
		if err := waitBalance(ctx, c, name, runtimes, func(b string) bool { return b != "" }); err != nil {
			return err
		}
	}
	return nil
}

// payThrough waits for a route from alice-sender to bob-receiver, sends the payment with lg,
// waits until the Accounts' status shows it and shows the fleet.
func payThrough(ctx context.Context, c client.Client, lg loadgen, kubeconfig string, runtimes []*process) error {
	step("waiting for a route from alice to " + destination + ": alice learns test.bob from bob over\n" +
		"    CCP (route broadcasts are on by default); probing with zero-amount packets")
	if err := lg.probe(ctx, runtimes); err != nil {
		return err
	}
	step(fmt.Sprintf("paying: %d packets of %d from alice-sender through alice and bob to bob-receiver", packets, amount))
	out, err := lg.run(ctx, packets, amount)
	if err != nil {
		return err
	}
	step("waiting for the runtimes to report the balances in Account status (at most one write per 2 s)")
	sent, received, err := waitPaid(ctx, c, out, runtimes)
	if err != nil {
		return err
	}
	step("kubectl get ilp")
	show(ctx, kubeconfig)
	fmt.Printf("    BALANCE is each connector's view in base units (scale 9): positive, the account owes its\n"+
		"    connector (alice-sender sent %s, not settled yet); negative, the connector owes the account\n"+
		"    (bob-receiver got %s, after alice's 0.002 spread). bob-alice stays 0: the sample gives it\n"+
		"    no balance settings.\n", sent, received)
	return nil
}

// statusTimeout bounds the waits for what the runtimes report in Account status. The cluster
// demo raises it: its pods share a busy machine with a whole node.
var statusTimeout = 20 * time.Second

// waitBalance waits until Account name's status.balance satisfies ok.
func waitBalance(ctx context.Context, c client.Client, name string, runtimes []*process, ok func(string) bool) error {
	return poll(ctx, statusTimeout, "status.balance of Account "+name, runtimes, func() (bool, error) {
		var a ilpv1.Account
		if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &a); err != nil {
			return false, err
		}
		return ok(a.Status.Balance), nil
	})
}

// amountLine is the line of loadgen's text output with what moved.
var amountLine = regexp.MustCompile(`amount\s+(\d+) fulfilled by the sender, (\d+) received`)

// waitPaid waits until the balances reported on the sender's and receiver's Accounts (and on
// alice's side of the peering) match what loadgen says moved; the sign is each connector's
// view, so only the size is compared. It returns the amounts sent and received.
func waitPaid(ctx context.Context, c client.Client, loadgenOutput string, runtimes []*process) (sent, received string, err error) {
	m := amountLine.FindStringSubmatch(loadgenOutput)
	if m == nil {
		return "", "", fmt.Errorf("cannot read the amounts in loadgen's output:\n%s", loadgenOutput)
	}
	want := map[string]string{"alice-sender": m[1], "alice-bob": m[2], "bob-receiver": m[2]}
	for _, name := range []string{"alice-sender", "alice-bob", "bob-receiver"} {
		if err := waitBalance(ctx, c, name, runtimes, func(b string) bool { return strings.TrimPrefix(b, "-") == want[name] }); err != nil {
			return "", "", err
		}
	}
	return m[1], m[2], nil
}

// loadgen runs `ilpfleet loadgen` between the two payment accounts.
type loadgen struct {
	binary, sender, receiver string
	wait                     time.Duration // how long probe tries
}

func (l loadgen) args(extra ...string) []string {
	return append([]string{"loadgen", "-sender", l.sender, "-receiver", l.receiver, "-destination", destination}, extra...)
}

// probe sends single zero-amount packets until one is fulfilled: then both links are up and
// alice routes test.bob to bob. Zero-amount packets leave every balance as it was.
func (l loadgen) probe(ctx context.Context, runtimes []*process) error {
	var last []byte
	err := poll(ctx, l.wait, "a packet from alice-sender to bob-receiver to be fulfilled", runtimes, func() (bool, error) {
		cmd := exec.CommandContext(ctx, l.binary, l.args("-n", "1", "-c", "1", "-warmup", "0", "-amount", "0", "-timeout", "8s", "-expiry", "5s")...)
		var err error
		last, err = cmd.CombinedOutput()
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("%w\nlast loadgen output:\n%s", err, last)
	}
	fmt.Println("    a zero-amount packet went through: alice has the route")
	return nil
}

// run sends n packets of amt and prints loadgen's report.
func (l loadgen) run(ctx context.Context, n, amt int) (string, error) {
	args := l.args("-n", strconv.Itoa(n), "-c", strconv.Itoa(concurrency), "-amount", strconv.Itoa(amt), "-warmup", "0", "-timeout", "30s")
	fmt.Printf("    $ %s %s\n", "ilpfleet", strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, l.binary, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	fmt.Print(indent(out.String(), "    "))
	if err != nil {
		return "", fmt.Errorf("loadgen: %w", err)
	}
	return out.String(), nil
}

// indent prefixes every line of s.
func indent(s, prefix string) string {
	lines := strings.SplitAfter(strings.TrimRight(s, "\n"), "\n")
	return prefix + strings.Join(lines, prefix) + "\n"
}
