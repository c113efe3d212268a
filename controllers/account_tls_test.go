package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
)

// tlsAccounts are alice's Accounts bob (btpClient) and carol (http.outgoing), each trusting the
// private CA of Secret peering-ca and presenting the client certificate of its own Secret.
func tlsAccounts(ns string) (bob, carol *ilpv1.Account) {
	ca := &ilpv1.SecretKeyRef{Name: "peering-ca", Key: "ca.crt"}
	bob = sampleAccount(ns, "bob", "alice")
	bob.Spec.Link = ilpv1.AccountLink{BTPClient: &ilpv1.BTPClientLink{URL: "btp+wss://bob.example/btp", TokenSecretRef: ilpv1.SecretKeyRef{Name: "bob", Key: "secret"},
		TLS: &ilpv1.ClientTLS{CASecretRef: ca, CertificateSecretRef: &ilpv1.TLSSecretRef{Name: "bob-client"}, ServerName: "bob.example"}}}
	out := httpOut("https://carol.example/ilp")
	out.TLS = &ilpv1.ClientTLS{CASecretRef: ca, CertificateSecretRef: &ilpv1.TLSSecretRef{Name: "carol-client"}}
	carol = httpAccount(ns, "carol", &ilpv1.HTTPLink{Outgoing: out})
	return bob, carol
}

// tlsSecret is a kubernetes.io/tls Secret as cert-manager writes it (the API server requires
// both keys of that type).
func tlsSecret(ns, name, cert string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Type: corev1.SecretTypeTLS,
		StringData: map[string]string{corev1.TLSCertKey: cert, corev1.TLSPrivateKeyKey: "key of " + cert}}
}

// TestAccountTLSSecrets: the Secrets of an Account's tls (the CA's, the client certificate's)
// are granted to the pods' Role beside the token Secrets, reported on the Account when they
// do not resolve (a certificate Secret without tls.key says so), and their versions reach
// Connector.status.secretVersions, so that a renewed certificate reaches the pods.
func TestAccountTLSSecrets(t *testing.T) {
	ns := namespace(t)
	bob, carol := tlsAccounts(ns)
	// bob-client is a Secret of another type that lacks tls.key; carol-client does not exist yet.
	bobClient := secret(ns, "bob-client", map[string]string{corev1.TLSCertKey: "cert"})
	mustCreate(t, secret(ns, "bob", map[string]string{"secret": "b", "in": "i", "out": "o"}), secret(ns, "peering-ca", map[string]string{"ca.crt": "ca"}),
		bobClient, sampleConnector(ns), bob, carol)
	waitRoleSecrets(t, ns, "alice-connector", []string{"bob", "bob-client", "carol-client", "peering-ca"})

	c := waitCondition(t, bob, ilpv1.ConditionReferencesResolved, metav1.ConditionFalse, ReasonSecretKeyNotFound)
	for _, w := range []string{`Secret "bob-client" has no key "tls.key"`, "kubernetes.io/tls", "tls.crt"} {
		if !strings.Contains(c.Message, w) {
			t.Errorf("bob's ReferencesResolved message %q, want it to contain %q", c.Message, w)
		}
	}
	waitCondition(t, bob, ilpv1.ConditionReady, metav1.ConditionFalse, ReasonSecretKeyNotFound)
	c = waitCondition(t, carol, ilpv1.ConditionReferencesResolved, metav1.ConditionFalse, ReasonSecretNotFound)
	if !strings.Contains(c.Message, `Secret "carol-client" does not exist`) {
		t.Errorf("carol's ReferencesResolved message %q, want it to name carol-client", c.Message)
	}

	update(t, bobClient, func(s *corev1.Secret) { s.StringData = map[string]string{corev1.TLSPrivateKeyKey: "key"} })
	carolClient := tlsSecret(ns, "carol-client", "cert v1")
	mustCreate(t, carolClient)
	waitCondition(t, bob, ilpv1.ConditionReferencesResolved, metav1.ConditionTrue, ReasonResolved)
	waitCondition(t, carol, ilpv1.ConditionReferencesResolved, metav1.ConditionTrue, ReasonResolved)

	// A renewal (cert-manager rewrites the Secret) moves the version the pods re-read by.
	ca := get(t, ns, "peering-ca", &corev1.Secret{})
	waitSecretVersions(t, ns, "alice", map[string]string{"carol-client": carolClient.ResourceVersion, "peering-ca": ca.ResourceVersion, "bob-client": bobClient.ResourceVersion})
	update(t, carolClient, func(s *corev1.Secret) {
		s.StringData = map[string]string{corev1.TLSCertKey: "cert v2", corev1.TLSPrivateKeyKey: "key v2"}
	})
	waitSecretVersions(t, ns, "alice", map[string]string{"carol-client": carolClient.ResourceVersion})

	// Dropping tls drops its Secrets from the Role.
	update(t, bob, func(a *ilpv1.Account) { a.Spec.Link.BTPClient.TLS = nil })
	update(t, carol, func(a *ilpv1.Account) { a.Spec.Link.HTTP.Outgoing.TLS.CertificateSecretRef = nil })
	waitRoleSecrets(t, ns, "alice-connector", []string{"bob", "peering-ca"})
	waitCondition(t, carol, ilpv1.ConditionReferencesResolved, metav1.ConditionTrue, ReasonResolved)
}

// waitSecretVersions waits until Connector ns/name's status.secretVersions holds want (the
// resourceVersion of each Secret named), the versions its pods re-read the Secrets by.
func waitSecretVersions(t *testing.T, ns, name string, want map[string]string) {
	t.Helper()
	conn := &ilpv1.Connector{}
	eventually(t, func() error {
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, conn); err != nil {
			return err
		}
		for n, rv := range want {
			if got := conn.Status.SecretVersions[n]; got != rv {
				return fmt.Errorf("secretVersions[%s] = %q, want %q (all: %v)", n, got, rv, conn.Status.SecretVersions)
			}
		}
		return nil
	})
}

// TestAccountServerTLSSecrets: the Secrets of a listening link's tls (the server
// certificate's, the client CA's) on btpListener, btpChildServer and http.incoming are granted
// to the pods' Role, reported on the Account when they do not resolve (a server certificate
// Secret without tls.key, a CA Secret without the key named, a missing Secret), and their
// versions reach Connector.status.secretVersions, so that a renewed server certificate
// reaches the pods.
func TestAccountServerTLSSecrets(t *testing.T) {
	ns := namespace(t)
	clientCA := &ilpv1.SecretKeyRef{Name: "client-ca", Key: "ca.crt"}
	dave := sampleAccount(ns, "dave", "alice")
	dave.Spec.Link = ilpv1.AccountLink{BTPListener: &ilpv1.BTPListenerLink{Port: 7770, SecretRef: ilpv1.SecretKeyRef{Name: "bob", Key: "secret"},
		TLS: &ilpv1.ServerTLS{CertificateSecretRef: ilpv1.TLSSecretRef{Name: "dave-server"}, ClientCASecretRef: clientCA}}}
	kids := sampleAccount(ns, "kids", "alice")
	kids.Spec.Relation = ilpv1.RelationChild
	kids.Spec.Link = ilpv1.AccountLink{BTPChildServer: &ilpv1.BTPChildServerLink{Port: 7771,
		TLS: &ilpv1.ServerTLS{CertificateSecretRef: ilpv1.TLSSecretRef{Name: "kids-server"}}}}
	in := httpIn(7772)
	in.TLS = &ilpv1.ServerTLS{CertificateSecretRef: ilpv1.TLSSecretRef{Name: "erin-server"}, ClientCASecretRef: clientCA}
	erin := httpAccount(ns, "erin", &ilpv1.HTTPLink{Incoming: in})
	// client-ca lacks ca.crt; kids-server does not exist yet; erin-server lacks tls.key.
	erinServer := secret(ns, "erin-server", map[string]string{corev1.TLSCertKey: "cert"})
	mustCreate(t, secret(ns, "bob", map[string]string{"secret": "b", "in": "i"}), secret(ns, "client-ca", map[string]string{"tls.crt": "ca"}),
		tlsSecret(ns, "dave-server", "dave v1"), erinServer, sampleConnector(ns), dave, kids, erin)
	waitRoleSecrets(t, ns, "alice-connector", []string{"bob", "client-ca", "dave-server", "erin-server", "kids-server"})

	for _, w := range []struct {
		acct   *ilpv1.Account
		reason string
		msg    []string
	}{
		{dave, ReasonSecretKeyNotFound, []string{`Secret "client-ca" has no key "ca.crt"`}},
		{kids, ReasonSecretNotFound, []string{`Secret "kids-server" does not exist`}},
		{erin, ReasonSecretKeyNotFound, []string{`Secret "erin-server" has no key "tls.key"`, "server certificate", "kubernetes.io/tls"}},
	} {
		c := waitCondition(t, w.acct, ilpv1.ConditionReferencesResolved, metav1.ConditionFalse, w.reason)
		for _, m := range w.msg {
			if !strings.Contains(c.Message, m) {
				t.Errorf("%s's ReferencesResolved message %q, want it to contain %q", w.acct.Name, c.Message, m)
			}
		}
		waitCondition(t, w.acct, ilpv1.ConditionReady, metav1.ConditionFalse, w.reason)
	}

	update(t, get(t, ns, "client-ca", &corev1.Secret{}), func(s *corev1.Secret) { s.StringData = map[string]string{"ca.crt": "ca"} })
	update(t, erinServer, func(s *corev1.Secret) { s.StringData = map[string]string{corev1.TLSPrivateKeyKey: "key"} })
	kidsServer := tlsSecret(ns, "kids-server", "kids v1")
	mustCreate(t, kidsServer)
	for _, a := range []*ilpv1.Account{dave, kids, erin} {
		waitCondition(t, a, ilpv1.ConditionReferencesResolved, metav1.ConditionTrue, ReasonResolved)
	}

	// A renewal of a server certificate moves the version the pods re-read by.
	daveServer := get(t, ns, "dave-server", &corev1.Secret{})
	waitSecretVersions(t, ns, "alice", map[string]string{"dave-server": daveServer.ResourceVersion, "kids-server": kidsServer.ResourceVersion,
		"erin-server": erinServer.ResourceVersion})
	update(t, daveServer, func(s *corev1.Secret) {
		s.StringData = map[string]string{corev1.TLSCertKey: "dave v2", corev1.TLSPrivateKeyKey: "key v2"}
	})
	waitSecretVersions(t, ns, "alice", map[string]string{"dave-server": daveServer.ResourceVersion})

	// Dropping tls drops its Secrets from the Role.
	update(t, dave, func(a *ilpv1.Account) { a.Spec.Link.BTPListener.TLS = nil })
	update(t, kids, func(a *ilpv1.Account) { a.Spec.Link.BTPChildServer.TLS = nil })
	update(t, erin, func(a *ilpv1.Account) { a.Spec.Link.HTTP.Incoming.TLS.ClientCASecretRef = nil })
	waitRoleSecrets(t, ns, "alice-connector", []string{"bob", "erin-server"})
}
