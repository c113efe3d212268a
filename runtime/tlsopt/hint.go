package tlsopt

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
)

// RemoteAlert is the text of the TLS alert the peer sent ("tls: certificate required"), when
// err is one. crypto/tls reports a peer's alert as a *net.OpError with Op "remote error", which
// callers would otherwise take for a network failure.
func RemoteAlert(err error) (string, bool) {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" && op.Err != nil {
		return op.Err.Error(), true
	}
	return "", false
}

// Hint is what an operator can do about err, a failed TLS connection made with cfg (nil: the
// system roots, no client certificate), whose tls option is at `at` ("tls", "outgoing.tls");
// "" when err is no TLS failure this package can explain.
func Hint(err error, at string, cfg *tls.Config) string {
	if err == nil {
		return ""
	}
	if h := verifyHint(err, at, cfg); h != "" {
		return h
	}
	if alert, ok := RemoteAlert(err); ok {
		return alertHint(alert, at, cfg != nil && (cfg.GetClientCertificate != nil || len(cfg.Certificates) > 0))
	}
	return ""
}

// verifyHint explains a failure found on our side: the peer's certificate or chain, as
// crypto/x509 checked it against cfg, or a port that does not answer in TLS. "" for others.
func verifyHint(err error, at string, cfg *tls.Config) string {
	privateCA := cfg != nil && cfg.RootCAs != nil
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		record   tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &unknown):
		issuer := ""
		if unknown.Cert != nil {
			issuer = fmt.Sprintf(" (its issuer is %q)", unknown.Cert.Issuer.String())
		}
		if privateCA {
			return fmt.Sprintf("the peer's certificate is not signed by an authority in %s.ca/caFile%s: give the CA that issued it there (only those authorities are trusted, not the system roots)", at, issuer)
		}
		return fmt.Sprintf("the peer's certificate is not signed by an authority the system trusts%s: for a private CA, set %s.ca (or %s.caFile) to its certificate", issuer, at, at)
	case errors.As(err, &hostname):
		holds := "it holds no DNS or IP names (subject alternative names; the common name is not checked): the peer must reissue it with its names"
		if c := hostname.Certificate; c != nil && len(c.DNSNames)+len(c.IPAddresses) > 0 {
			names := slices.Clone(c.DNSNames)
			for _, ip := range c.IPAddresses {
				names = append(names, ip.String())
			}
			holds = "it holds " + strings.Join(names, ", ")
		} else if c == nil {
			holds = "the error says which names it holds"
		}
		if cfg != nil && cfg.ServerName != "" {
			return fmt.Sprintf("the peer's certificate is not valid for %s.servername %q (%s): set servername to one of its names", at, cfg.ServerName, holds)
		}
		return fmt.Sprintf("the peer's certificate is not valid for the host of the URL (%s): dial one of its names, or set %s.servername to one", holds, at)
	case errors.As(err, &invalid):
		switch invalid.Reason {
		case x509.Expired:
			return "the peer's certificate (or its CA's) has expired or is not valid yet: the peer must renew it (or this host's clock is wrong)"
		case x509.NotAuthorizedToSign:
			return fmt.Sprintf("a certificate in the peer's chain is not a CA, yet signs another: the peer sends a wrong chain, or %s.ca holds a leaf certificate instead of the CA's", at)
		case x509.IncompatibleUsage, x509.CANotAuthorizedForExtKeyUsage:
			return "the peer's certificate (or a CA's in its chain) is not meant for a TLS server (its extended key usage): the peer must reissue it for server authentication"
		case x509.CANotAuthorizedForThisName, x509.NameConstraintsWithoutSANs, x509.UnconstrainedName, x509.TooManyConstraints:
			return "a CA in the peer's chain is not allowed to sign the names of the peer's certificate (its name constraints): the peer needs a certificate from a CA allowed for its names"
		}
		return "the peer's certificate chain is not valid (the error says why): the peer must fix its certificate or chain"
	case errors.Is(err, http.ErrSchemeMismatch):
		// What net/http makes of the RecordHeaderError when the peer answers in HTTP: the usual
		// case, every ILP-over-HTTP peer and BTP's WebSocket being HTTP servers.
		return "the peer's port does not speak TLS (it answered in plain HTTP): check the URL's scheme and port (a plain peer needs btp+ws:// or http://)"
	case errors.As(err, &record):
		return "the peer's port does not speak TLS: check the URL's scheme and port (a plain peer needs btp+ws:// or http://)"
	}
	return ""
}

// alertHint explains the TLS alert the peer ended the handshake with (RemoteAlert), clientCert
// telling whether we had a client certificate to send.
func alertHint(alert, at string, clientCert bool) string {
	switch {
	case strings.Contains(alert, "certificate required"),
		!clientCert && strings.Contains(alert, "bad certificate"):
		return fmt.Sprintf("the peer requires a client certificate and we sent none: set %s.cert and %s.key (or certFile/keyFile) to a certificate the peer trusts", at, at)
	case !clientCert && strings.Contains(alert, "handshake failure"):
		// A TLS 1.2 peer may say this for a missing client certificate, and any peer for no
		// cipher suite, curve or ALPN protocol in common.
		return fmt.Sprintf("the peer probably requires a client certificate and we sent none (or we have no cipher in common): set %s.cert and %s.key (or certFile/keyFile) to a certificate the peer trusts", at, at)
	case strings.Contains(alert, "certificate"), strings.Contains(alert, "access denied"):
		return fmt.Sprintf("the peer refused our client certificate (%s.cert/certFile): it must be signed by an authority the peer trusts for clients, be valid now and be meant for client authentication", at)
	case strings.Contains(alert, "protocol version"):
		return "the peer does not speak TLS 1.2 or later, the least ilpfleet uses"
	case strings.Contains(alert, "unrecognized name"):
		return fmt.Sprintf("the peer does not serve the name we sent (SNI, the URL's host or %s.servername)", at)
	}
	return "the peer ended the TLS handshake with this alert"
}
