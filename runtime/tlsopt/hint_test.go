package tlsopt

import (
	"crypto/x509"
	"fmt"
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
