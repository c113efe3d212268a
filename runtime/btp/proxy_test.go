package btp

import (
	"net/url"
	"strings"
	"testing"

	"github.com/ilpfleet/ilpfleet/internal/testcert"
	"github.com/ilpfleet/ilpfleet/internal/testproxy"
)

// TestClientThroughProxy: a client honours HTTPS_PROXY (its transport is a clone of Go's
// default one): a packet to btp+wss://peer.example goes through the proxy's CONNECT. The
// client runs in a child process with the proxy variables set (testproxy.RunChild) and dials
// a name only the proxy knows.
func TestClientThroughProxy(t *testing.T) {
	if peer, ca, ok := testproxy.Child(); ok {
		server := "btp+wss://u:s3cret@" + peer + "/btp"
		o := tlsClientOptions(t, server, testcert.TLSOption("ca", ca))
		roundTrip(t, startClient(t, server, echo, func(co *ClientOptions) { *co = o }))
		return
	}
	ca := testcert.NewCA(t, "peers CA")
	_, server := startTLSServer(t, testcert.ServerConfig(ca.Server(t, "peer.example"), nil))
	u, err := url.Parse(strings.Replace(server, "btp+wss", "https", 1))
	if err != nil {
		t.Fatal(err)
	}
	testproxy.RunChild(t, "TestClientThroughProxy", "peer.example:"+u.Port(), ca.PEM)
}
