package churn

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/testport"
	"github.com/ilpfleet/ilpfleet/internal/testwait"
	"github.com/ilpfleet/ilpfleet/runtime/btp"
	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/connector"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/store"
)

const self = "test.churn"

var preimage = [32]byte{7, 7, 7}

func condition() [32]byte { return sha256.Sum256(preimage[:]) }

// prepare is a Prepare to dest with the condition the test's receivers fulfill.
func prepare(dest string, expiry time.Duration) *ilp.Prepare {
	return &ilp.Prepare{Amount: 1, ExpiresAt: time.Now().Add(expiry), ExecutionCondition: condition(), Destination: ilp.Address(dest)}
}

// fulfill answers every Prepare but those of the peer protocols, which no test peer speaks
// unless it says so.
func fulfill(_ context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
	if strings.HasPrefix(string(p.Destination), "peer.") {
		return nil, ilp.Rejectf(ilp.CodeUnreachable, "test.peer", "no peer protocols here")
	}
	return &ilp.Fulfill{Fulfillment: preimage}, nil
}

// hold never answers: the Prepare expires at the connector. (The handler's ctx is the
// connection's, not bound by the Prepare's expiry: the wait is.)
func hold(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
	tm := time.NewTimer(time.Until(p.ExpiresAt) + 50*time.Millisecond)
	defer tm.Stop()
	select {
	case <-ctx.Done():
	case <-tm.C:
	}
	return nil, ilp.Rejectf(ilp.CodeUnreachable, "test.hold", "held until past its expiry")
}

// btpListener, miniAccounts, btpClient and httpPeer are accounts of the config, as YAML lines
// under accounts:. Tokens are tok-<id> (BTP) and in-<id>/out-<id> (ILP-over-HTTP).
func btpListener(id, relation string, port int, extra string) string {
	return fmt.Sprintf("  %s:\n    relation: %s\n    plugin: ilp-plugin-btp\n    assetCode: USD\n    assetScale: 2\n%s"+
		"    options: {listener: {host: 127.0.0.1, port: %d, secret: tok-%s}}\n", id, relation, extra, port, id)
}

func miniAccounts(id string, port int) string {
	return fmt.Sprintf("  %s:\n    relation: child\n    plugin: ilp-plugin-mini-accounts\n    assetCode: USD\n    assetScale: 2\n"+
		"    options: {wsOpts: {host: 127.0.0.1, port: %d}}\n", id, port)
}

func btpClient(id string, port int) string {
	return fmt.Sprintf("  %s:\n    relation: peer\n    plugin: ilp-plugin-btp\n    assetCode: USD\n    assetScale: 2\n"+
		"    sendRoutes: false\n    receiveRoutes: false\n"+
		"    options: {server: \"btp+ws://%s:tok-%s@127.0.0.1:%d\", reconnectInterval: 5}\n", id, id, id, port)
}

func httpPeer(id, mode string, in, out int) string {
	return fmt.Sprintf("  %s:\n    relation: peer\n    plugin: ilp-plugin-http\n    assetCode: USD\n    assetScale: 2\n"+
		"    sendRoutes: false\n    receiveRoutes: false\n    options:\n      mode: %s\n"+
		"      incoming: {host: 127.0.0.1, port: %d, staticToken: in-%s}\n"+
		"      outgoing: {url: \"http://127.0.0.1:%d/ilp\", staticToken: out-%s, callbackUrl: \"http://127.0.0.1:%d/callback\"}\n",
		id, mode, in, id, out, id, in)
}

// doc is a config: the accounts (YAML lines) and routes (prefix → account).
func doc(settlementPort int, accounts []string, routes map[string]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "ilpAddress: %s\nbackend: one-to-one\nspread: 0\nminMessageWindow: 50\nmaxHoldTime: 5000\n", self)
	if settlementPort != 0 {
		fmt.Fprintf(&b, "settlementApiHost: 127.0.0.1\nsettlementApiPort: %d\n", settlementPort)
	}
	b.WriteString("accounts:\n")
	for _, a := range accounts {
		b.WriteString(a)
	}
	if len(routes) > 0 {
		b.WriteString("routes:\n")
		for prefix, id := range routes {
			fmt.Fprintf(&b, "  - {targetPrefix: %s, peerId: %s}\n", prefix, id)
		}
	}
	return b.String()
}

func mustConfig(t *testing.T, d string) *config.Config {
	t.Helper()
	cfg, err := config.FromData([]byte(d), "churn")
	if err != nil {
		t.Fatalf("config: %v\n%s", err, d)
	}
	return cfg
}

// newRig starts a connector on d over an in-memory store the test can count the keys of.
func newRig(t *testing.T, d string) *rig {
	t.Helper()
	st := store.NewMemory()
	c, err := connector.New(mustConfig(t, d), connector.Options{Store: st, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.Close(ctx)
		_ = st.Close()
	})
	keys := func() int {
		k, err := st.Keys(context.Background(), "")
		if err != nil {
			t.Fatal(err)
		}
		return len(k)
	}
	return &rig{t: t, c: c, keys: keys}
}

// testLogger discards, unless CHURN_LOG=1 asks for the connector's log on stderr.
func testLogger() *slog.Logger {
	if os.Getenv("CHURN_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func (r *rig) apply(d string) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.c.Apply(ctx, mustConfig(r.t, d)); err != nil {
		r.t.Fatalf("Apply: %v", err)
	}
}

// client connects a BTP client as user:token to port and answers with h. The caller closes it.
func client(t *testing.T, port int, user, token string, h ilp.Handler) *btp.Client {
	t.Helper()
	cl := newClient(t, port, user, token)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cl.Start(ctx, h); err != nil {
		t.Fatalf("client %s: %v", user, err)
	}
	return cl
}

func newClient(t *testing.T, port int, user, token string) *btp.Client {
	t.Helper()
	cl, err := btp.NewClient(btp.ClientOptions{Server: "btp+ws://" + user + ":" + token + "@127.0.0.1:" + strconv.Itoa(port),
		ReconnectInterval: 5 * time.Millisecond, Common: btp.Common{Logger: slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// mustFulfill sends p through cl and fails the test unless it is fulfilled.
func mustFulfill(t *testing.T, cl *btp.Client, p *ilp.Prepare) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cl.Send(ctx, p); err != nil {
		t.Errorf("packet to %s: %v", p.Destination, err)
	}
}

// rejectCode sends p through cl and returns the code of the Reject ("" with the error text
// when it was fulfilled or failed otherwise).
func rejectCode(cl *btp.Client, p *ilp.Prepare) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := cl.Send(ctx, p)
	if r, ok := err.(*ilp.Reject); ok {
		return string(r.Code)
	}
	return fmt.Sprintf("not a reject: %v", err)
}

func port(t *testing.T) int { return testport.Get(t) }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.Eventually(t, what, settleTries, cond)
}

// parallel runs n iterations of f on w workers and waits for them.
func parallel(n, w int, f func(i int)) {
	var next atomic.Int64
	done := make(chan struct{})
	for range w {
		go func() {
			defer func() { done <- struct{}{} }()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				f(i)
			}
		}()
	}
	for range w {
		<-done
	}
}
