package ilphttp

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/testcert"
	"github.com/ilpfleet/ilpfleet/internal/testproxy"
)

// Where the child process of TestOutgoingThroughProxy finds its peer and the peer's CA.
const (
	proxyPeerEnv = "ILPFLEET_TEST_PROXY_PEER"
	proxyCAEnv   = "ILPFLEET_TEST_PROXY_CA"
)

// TestOutgoingThroughProxy: outgoing requests honour HTTPS_PROXY, as Go's default transport and
// the BTP client do (an egress proxy is the only way out of many networks): a packet to
// https://peer.example goes through the proxy's CONNECT. net/http reads the proxy variables
// once per process and never proxies loopback addresses, so the sender runs in a child process
// with the variables set and dials a name that only the proxy knows (it tunnels to the test
// peer on 127.0.0.1).
func TestOutgoingThroughProxy(t *testing.T) {
	if peer := os.Getenv(proxyPeerEnv); peer != "" {
		sendThroughProxy(t, peer, os.Getenv(proxyCAEnv))
		return
	}
	ca := testcert.NewCA(t, "peers CA")
	peerURL, _ := startTLSServer(t, testcert.ServerConfig(ca.Server(t, "peer.example"), nil), false)
	u, err := url.Parse(peerURL)
	if err != nil {
		t.Fatal(err)
	}
	port := u.Port()
	proxy, connects := testproxy.Start(t)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestOutgoingThroughProxy$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "HTTPS_PROXY="+proxy, "NO_PROXY=", "no_proxy=",
		proxyPeerEnv+"=peer.example:"+port, proxyCAEnv+"="+string(ca.PEM))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the sender behind the proxy: %v\n%s", err, out)
	}
	if got, want := connects(), []string{"peer.example:" + port}; !slices.Equal(got, want) {
		t.Errorf("the proxy was asked to CONNECT to %q; want %q", got, want)
	}
}

// sendThroughProxy is the child's part: one packet over an https:// outgoing link to peer,
// trusting the PEM CA ca.
func sendThroughProxy(t *testing.T, peer, ca string) {
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	o, err := ParseOptions(json.RawMessage(`{"outgoing":{"url":` + q("https://"+peer+"/accounts/client/ilp") +
		`,"staticToken":"in-token","tls":{"ca":` + q(ca) + `}}}`))
	if err != nil {
		t.Fatal(err)
	}
	o.Account, o.Address = "peer", self
	l, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Start(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if f, err := l.Send(context.Background(), testPrepare(10*time.Second)); err != nil || f.Fulfillment != testFulfillment {
		t.Fatalf("Send through the proxy: %+v, %v; want the Fulfill", f, err)
	}
}
