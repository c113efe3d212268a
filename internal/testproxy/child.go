package testproxy

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"
)

// Where the child process RunChild starts finds its peer and the peer's CA.
const (
	peerEnv = "ILPFLEET_TEST_PROXY_PEER"
	caEnv   = "ILPFLEET_TEST_PROXY_CA"
)

// Child reports whether this process is the child of a RunChild (ok), and if so the peer to
// dial (host:port, a name only the proxy resolves) and the PEM CA to trust for it.
func Child() (peer, caPEM string, ok bool) {
	peer = os.Getenv(peerEnv)
	return peer, os.Getenv(caEnv), peer != ""
}

// RunChild runs the test testName again in a child process behind a proxy (Start):
// HTTPS_PROXY names it, NO_PROXY is empty, and Child gives the child peerHostPort and caPEM.
// net/http reads the proxy variables once per process and never proxies loopback addresses,
// hence a child dialling a name only the proxy knows. The test fails if the child fails or if
// the proxy was asked to CONNECT to anything but peerHostPort, once.
func RunChild(t testing.TB, testName, peerHostPort string, caPEM []byte) {
	t.Helper()
	proxy, connects := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+testName+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "HTTPS_PROXY="+proxy, "NO_PROXY=", "no_proxy=",
		peerEnv+"="+peerHostPort, caEnv+"="+string(caPEM))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s behind the proxy: %v\n%s", testName, err, out)
	}
	if got, want := connects(), []string{peerHostPort}; !slices.Equal(got, want) {
		t.Errorf("the proxy was asked to CONNECT to %q; want %q", got, want)
	}
}
