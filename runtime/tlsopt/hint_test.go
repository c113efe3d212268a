package tlsopt

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
)

// TestHintInvalidCertificate: the hint for a peer's certificate that x509 finds invalid says
// what is wrong by the reason: a name-constraint failure is not called a usage problem.
func TestHintInvalidCertificate(t *testing.T) {
	for _, tc := range []struct {
		reason x509.InvalidReason
		want   string
	}{
		{x509.Expired, "has expired or is not valid yet"},
		{x509.NotAuthorizedToSign, "is not a CA, yet signs another"},
		{x509.IncompatibleUsage, "not meant for a TLS server"},
		{x509.CANotAuthorizedForExtKeyUsage, "not meant for a TLS server"},
		{x509.CANotAuthorizedForThisName, "not allowed to sign the names"},
		{x509.NameConstraintsWithoutSANs, "not allowed to sign the names"},
		{x509.UnconstrainedName, "not allowed to sign the names"},
		{x509.TooManyConstraints, "not allowed to sign the names"},
		{x509.TooManyIntermediates, "chain is not valid (the error says why)"},
	} {
		err := fmt.Errorf("tls: failed to verify certificate: %w", x509.CertificateInvalidError{Reason: tc.reason})
		if h := Hint(err, "tls", nil); !strings.Contains(h, tc.want) {
			t.Errorf("reason %d: hint %q; want it to contain %q", tc.reason, h, tc.want)
		}
	}
}

// TestHintAlert: the hint for a peer's alert. "certificate required" (TLS 1.3) and "bad
// certificate" with no client certificate set mean the peer wants one; "handshake failure" may
// mean that or no cipher in common, and says both; with a client certificate set, an alert
// about certificates is about ours.
func TestHintAlert(t *testing.T) {
	withCert := &tls.Config{GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tls.Certificate{}, nil }}
	for _, tc := range []struct {
		alert string
		cfg   *tls.Config
		want  string
	}{
		{"tls: certificate required", nil, "the peer requires a client certificate and we sent none: set tls.cert and tls.key"},
		{"tls: bad certificate", nil, "the peer requires a client certificate and we sent none: set tls.cert and tls.key"},
		{"tls: handshake failure", nil, "the peer probably requires a client certificate and we sent none (or we have no cipher in common): set tls.cert and tls.key"},
		{"tls: handshake failure", withCert, "the peer ended the TLS handshake with this alert"},
		{"tls: bad certificate", withCert, "the peer refused our client certificate (tls.cert/certFile)"},
		{"tls: protocol version not supported", nil, "does not speak TLS 1.2 or later"},
		{"tls: unrecognized name", nil, "does not serve the name we sent"},
	} {
		err := fmt.Errorf("dial: %w", &net.OpError{Op: "remote error", Err: errors.New(tc.alert)})
		if h := Hint(err, "tls", tc.cfg); !strings.Contains(h, tc.want) {
			t.Errorf("alert %q (client certificate %t): hint %q; want it to contain %q", tc.alert, tc.cfg != nil, h, tc.want)
		}
	}
	if h := Hint(errors.New("connection refused"), "tls", nil); h != "" {
		t.Errorf("no TLS failure: hint %q; want none", h)
	}
}
