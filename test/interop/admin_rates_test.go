package interop

import (
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"testing"
	"time"
)

// rateMatrix is GET /rates: source account → destination account → rate, each rate the JSON
// number as written (JS prints Numbers, ilpfleet decimals; compared as exact rationals).
type rateMatrix map[string]map[string]json.Number

// TestAdminRatesMatchJSConnector: for the same accounts, spread and ECB rates, ilpfleet's
// GET /rates answers what the JS ilp-connector's does — the same account pairs and, pair by
// pair, the same rate (scales and spread applied, rounded to 15 digits) — and ?from= (ours)
// answers one row of it.
func TestAdminRatesMatchJSConnector(t *testing.T) {
	needNode(t)
	needIlpfleet(t)
	js, ours := adminRates(t, jsConn), adminRates(t, ilpfleet)
	t.Logf("GET /rates\n JS:       %v\n ilpfleet: %v", js, ours)
	if len(js) != 4 {
		t.Fatalf("JS GET /rates has %d rows, want one per account (4): %v", len(js), js)
	}
	for src, row := range js {
		if len(ours[src]) != len(row) {
			t.Errorf("row %s: ilpfleet %v, JS %v", src, ours[src], row)
		}
		for dst, want := range row {
			if got, ok := ours[src][dst]; !ok || !sameNumber(t, got, want) {
				t.Errorf("rate %s→%s: ilpfleet %s (present %v), JS %s", src, dst, got, ok, want)
			}
		}
	}
}

// adminRates starts a connector of impl with four accounts (USD, JPY and EUR at two scales, on
// the ECB mirror, spread 0.01) and returns its GET /rates; for ilpfleet it also checks that
// ?from= answers the same row.
func adminRates(t *testing.T, i impl) rateMatrix {
	var accounts []account
	var ports []int
	for _, a := range []struct {
		id, code string
		scale    int
	}{{"usd6", "USD", 6}, {"eur9", "EUR", 9}, {"eur2", "EUR", 2}, {"jpy0", "JPY", 0}} {
		port := freePort(t)
		accounts = append(accounts, account{id: a.id, relation: "peer", plugin: "ilp-plugin-btp",
			assetCode: a.code, assetScale: a.scale, listenPort: port, secret: peerSecret})
		ports = append(ports, port)
	}
	c := startConnector(t, i, "test.rates", accounts, [2]string{"test.far", "eur9"}, ports)
	if !c.admin {
		t.Fatalf("%s: the admin API does not answer", i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var m rateMatrix
	if err := getJSON(ctx, c.adminPort, "/rates", &m); err != nil {
		t.Fatalf("%s: %v", i, err)
	}
	if i == ilpfleet {
		var row rateMatrix
		if err := getJSON(ctx, c.adminPort, "/rates?from=usd6", &row); err != nil {
			t.Fatal(err)
		}
		if len(row) != 1 || fmt.Sprint(row["usd6"]) != fmt.Sprint(m["usd6"]) {
			t.Errorf("GET /rates?from=usd6 = %v, want the row %v", row, m["usd6"])
		}
	}
	return m
}

// sameNumber compares two JSON numbers exactly, whatever their notation (1e-7, 0.0000001).
func sameNumber(t *testing.T, a, b json.Number) bool {
	t.Helper()
	x, ok1 := new(big.Rat).SetString(a.String())
	y, ok2 := new(big.Rat).SetString(b.String())
	if !ok1 || !ok2 {
		t.Errorf("not numbers: %q, %q", a, b)
		return false
	}
	return x.Cmp(y) == 0
}
