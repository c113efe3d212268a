package interop

import (
	"fmt"
	"testing"
)

// STREAM payments whose peer hop A ↔ B is ILP-over-HTTP (RFC 35, synchronous, as
// ilp-plugin-http 1.6.1 speaks it): ilpfleet's ilp-plugin-http link against the npm plugin
// inside a JS ilp-connector, in both directions, with the same amount and balance checks as
// the BTP payments.

func TestStreamPaymentOverHTTPIlpfleetToJSConnector(t *testing.T) {
	needIlpfleet(t)
	testStreamPaymentOver(t, ilpfleet, jsConn, httpPeers(false))
}

func TestStreamPaymentOverHTTPJSConnectorToIlpfleet(t *testing.T) {
	needIlpfleet(t)
	testStreamPaymentOver(t, jsConn, ilpfleet, httpPeers(false))
}

// TestStreamPaymentOverHTTP2JSConnectorToIlpfleet: the JS plugin with `http2: true` speaks
// HTTP/2 with prior knowledge (h2c) to ilpfleet's server, and ilpfleet answers in kind.
func TestStreamPaymentOverHTTP2JSConnectorToIlpfleet(t *testing.T) {
	needIlpfleet(t)
	testStreamPaymentOver(t, jsConn, ilpfleet, httpPeers(true))
}

func TestStreamPaymentOverHTTPBetweenIlpfleets(t *testing.T) {
	needIlpfleet(t)
	testStreamPaymentOver(t, ilpfleet, ilpfleet, httpPeers(false))
}

// httpPeers: both sides listen (each ilp-plugin-http has a server) and POST to the other,
// each direction with its own bearer token. h2 turns on `outgoing.http2` of both.
func httpPeers(h2 bool) peerLink {
	return func(t *testing.T) (aOnB, bOnA account) {
		portA, portB := freePort(t), freePort(t)
		aOnB = account{id: "a", relation: "peer", plugin: "ilp-plugin-http", assetCode: "EUR", assetScale: 9,
			listenPort: portB, options: httpOptions(portB, portA, "a-to-b", "b-to-a", "b", h2)}
		bOnA = account{id: "b", relation: "peer", plugin: "ilp-plugin-http", assetCode: "EUR", assetScale: 9,
			listenPort: portA, options: httpOptions(portA, portB, "b-to-a", "a-to-b", "a", h2)}
		return aOnB, bOnA
	}
}

// httpOptions are the ilp-plugin-http options of an account listening on port (checking
// inToken) and POSTing to peerPort (with outToken). Both bind 127.0.0.1, each its own way:
// ilpfleet takes incoming.host; the JS plugin passes incoming.port to node's server.listen,
// which also takes an object {port, host}. `name` (the ILP-Peer-Name header) is set because the
// JS plugin would otherwise send String(port).
func httpOptions(port, peerPort int, inToken, outToken, name string, h2 bool) func(impl) map[string]any {
	return func(i impl) map[string]any {
		in := map[string]any{"port": port, "staticToken": inToken}
		if i == jsConn {
			in["port"] = map[string]any{"port": port, "host": "127.0.0.1"}
		} else {
			in["host"] = "127.0.0.1"
		}
		out := map[string]any{"url": fmt.Sprintf("http://127.0.0.1:%d/ilp", peerPort), "staticToken": outToken, "name": name}
		if h2 {
			out["http2"] = true
		}
		return map[string]any{"incoming": in, "outgoing": out}
	}
}
