// Package settlementtest holds what the tests of the settlement packages share: both sides of
// RFC 38 are HTTP APIs whose settlement endpoints take an Idempotency-Key.
package settlementtest

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// Do sends a request with body, and with an Idempotency-Key header when key is not empty, and
// returns the status and the body without surrounding white space.
func Do(t testing.TB, method, url, key, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, strings.TrimSpace(string(b))
}
