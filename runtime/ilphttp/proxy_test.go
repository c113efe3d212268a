package ilphttp

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/testcert"
	"github.com/ilpfleet/ilpfleet/internal/testproxy"
)

// TestOutgoingThroughProxy: outgoing requests honour HTTPS_PROXY, as Go's default transport and
// the BTP client do (an egress proxy is the only way out of many networks): a packet to
// https://peer.example goes through the proxy's CONNECT. The sender runs in a child process
// with the proxy variables set (testproxy.RunChild) and dials a name that only the proxy knows
// (it tunnels to the test peer on 127.0.0.1).
func TestOutgoingThroughProxy(t *testing.T) {
	if peer, ca, ok := testproxy.Child(); ok {
		sendThroughProxy(t, peer, ca)
		return
	}
	ca := testcert.NewCA(t, "peers CA")
	peerURL, _ := startTLSServer(t, testcert.ServerConfig(ca.Server(t, "peer.example"), nil), false)
	u, err := url.Parse(peerURL)
	if err != nil {
		t.Fatal(err)
	}
	testproxy.RunChild(t, "TestOutgoingThroughProxy", "peer.example:"+u.Port(), ca.PEM)
}

// sendThroughProxy is the child's part: one packet over an https:// outgoing link to peer,
// trusting the PEM CA ca.
func sendThroughProxy(t *testing.T, peer, ca string) {
	l := startTLSLink(t, `{"url":`+testcert.Quote("https://"+peer+"/accounts/client/ilp")+
		`,"staticToken":"in-token","tls":`+testcert.TLSOption("ca", ca)+`}`, nil, nil)
	if f, err := l.Send(context.Background(), testPrepare(10*time.Second)); err != nil || f.Fulfillment != testFulfillment {
		t.Fatalf("Send through the proxy: %+v, %v; want the Fulfill", f, err)
	}
}
