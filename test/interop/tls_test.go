package interop

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/testcert"
)

// TestStreamPaymentOverWSS: the npm ilp-plugin-btp client (under js/stream-sender.js and
// js/stream-receiver.js) dials ilpfleet's listeners over btp+wss://, their certificate signed
// by a private CA that Node trusts through NODE_EXTRA_CA_CERTS: the sender is a child of a
// mini-accounts server with `tls` (certificate and key from files), the receiver a child on an
// ilp-plugin-btp listener with `listener.tls` (inline PEM); a STREAM payment goes through. The
// JS plugin takes no TLS options, so it cannot present a client certificate: this is
// server-only TLS (mutual TLS is covered by the Go tests of runtime/btp).
func TestStreamPaymentOverWSS(t *testing.T) {
	needNode(t)
	needIlpfleet(t)
	ca := testcert.NewCA(t, "interop private CA")
	server := ca.Server(t, "127.0.0.1")
	t.Setenv("NODE_EXTRA_CA_CERTS", testcert.WriteFile(t, "ca.pem", ca.PEM)) // the node children inherit it
	certFile, keyFile := testcert.WriteFile(t, "tls.crt", server.CertPEM), testcert.WriteFile(t, "tls.key", server.KeyPEM)

	alicePort, bobPort := freePort(t), freePort(t)
	alice := account{id: "alice", relation: "child", plugin: "ilp-plugin-mini-accounts", assetCode: "EUR", assetScale: 9, listenPort: alicePort,
		options: func(impl) map[string]any {
			return map[string]any{"wsOpts": map[string]any{"host": "127.0.0.1", "port": alicePort},
				"tls": map[string]any{"certFile": certFile, "keyFile": keyFile}}
		}}
	bob := account{id: "bob", relation: "child", plugin: "ilp-plugin-btp", assetCode: "EUR", assetScale: 9, listenPort: bobPort,
		options: func(impl) map[string]any {
			return map[string]any{"listener": map[string]any{"host": "127.0.0.1", "port": bobPort, "secret": bobSecret,
				"tls": map[string]any{"cert": string(server.CertPEM), "key": string(server.KeyPEM)}}}
		}}
	c := startConnector(t, ilpfleet, "test.a", []account{alice, bob}, [2]string{"test.a.bob", "bob"}, []int{alicePort, bobPort})

	recv := startReceiver(t, fmt.Sprintf("btp+wss://:%s@127.0.0.1:%d", bobSecret, bobPort))
	if recv.ready.Address != "test.a.bob" || recv.ready.AssetCode != "EUR" || recv.ready.AssetScale != 9 {
		t.Fatalf("receiver's IL-DCP answer over wss: %+v, want test.a.bob EUR 9", recv.ready)
	}
	c.waitConnected(t, "bob") // alice is connected once the sender is
	sent := runSender(t, fmt.Sprintf("btp+wss://:%s@127.0.0.1:%d", aliceToken, alicePort),
		recv.ready.DestinationAccount, recv.ready.SharedSecret, payAmount)
	if sent.TotalSent != strconv.Itoa(payAmount) || sent.TotalDelivered == "0" || len(sent.amounts) == 0 {
		t.Fatalf("sender over wss: sent %s, delivered %s in %v; want %d sent and some delivered", sent.TotalSent, sent.TotalDelivered, sent.amounts, payAmount)
	}
	want, err := strconv.ParseUint(sent.TotalDelivered, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	got := recv.waitTotal(t, want, 20*time.Second)
	if got.total != want {
		t.Errorf("receiver got %d over wss; the sender says %d were delivered", got.total, want)
	}
}
