package btp

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/testcert"
	"github.com/ilpfleet/ilpfleet/internal/testproxy"
)

// Where the child process of TestClientThroughProxy finds its peer and the peer's CA.
const (
	proxyPeerEnv = "ILPFLEET_TEST_PROXY_PEER"
	proxyCAEnv   = "ILPFLEET_TEST_PROXY_CA"
)

// TestClientThroughProxy: a client honours HTTPS_PROXY (its transport is a clone of Go's
// default one): a packet to btp+wss://peer.example goes through the proxy's CONNECT. net/http
// reads the proxy variables once per process and never proxies loopback addresses, so the
// client runs in a child process with the variables set and dials a name only the proxy knows.
func TestClientThroughProxy(t *testing.T) {
	if peer := os.Getenv(proxyPeerEnv); peer != "" {
		server := "btp+wss://u:s3cret@" + peer + "/btp"
		o := tlsClientOptions(t, server, tlsJSON("ca", os.Getenv(proxyCAEnv)))
		roundTrip(t, startClient(t, server, echo, func(co *ClientOptions) { *co = o }))
		return
	}
	ca := testcert.NewCA(t, "peers CA")
	_, server := startTLSServer(t, testcert.ServerConfig(ca.Server(t, "peer.example"), nil))
	u, err := url.Parse(strings.Replace(server, "btp+wss", "https", 1))
	if err != nil {
		t.Fatal(err)
	}
	proxy, connects := testproxy.Start(t)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestClientThroughProxy$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "HTTPS_PROXY="+proxy, "NO_PROXY=", "no_proxy=",
		proxyPeerEnv+"=peer.example:"+u.Port(), proxyCAEnv+"="+string(ca.PEM))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the client behind the proxy: %v\n%s", err, out)
	}
	if got, want := connects(), []string{"peer.example:" + u.Port()}; !slices.Equal(got, want) {
		t.Errorf("the proxy was asked to CONNECT to %q; want %q", got, want)
	}
}
