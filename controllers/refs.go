package controllers

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
)

// Field indexes besides fieldConnectorRef.
const (
	// fieldSecretNames indexes Accounts, Connectors and SettlementEngines by the Secrets they use.
	fieldSecretNames = ".spec.secretNames"
	// fieldSettlementEngineRef indexes Accounts by the SettlementEngine they settle through.
	fieldSettlementEngineRef = ".spec.settlementEngineRef"
)

// Reasons of ReferencesResolved (and of Ready when a reference is missing).
const (
	ReasonResolved             = "Resolved"
	ReasonConnectorNotFound    = "ConnectorNotFound"
	ReasonSecretNotFound       = "SecretNotFound"
	ReasonSecretKeyNotFound    = "SecretKeyNotFound"
	ReasonEngineNotFound       = "SettlementEngineNotFound"
	ReasonEngineAssetMismatch  = "SettlementEngineAssetMismatch"
	ReasonNoSettlementListener = "NoSettlementListener"
	ReasonInheritFromNotFound  = "InheritFromNotFound"
	ReasonInheritFromNotParent = "InheritFromNotParent"
)

// refProblem is a reference that does not resolve: a condition reason and a message a person can act on.
type refProblem struct{ reason, msg string }

// secretRef is a Secret key a spec uses (Key "": the Secret only) and, when set, what a
// message about the key missing adds.
type secretRef struct {
	ilpv1.SecretKeyRef
	hint string
}

// certificateKeyHint is what a certificate Secret without tls.crt or tls.key is told, by the
// kind of certificate ("client", "server").
func certificateKeyHint(kind string) string {
	return fmt.Sprintf("tls.certificateSecretRef needs a Secret of type kubernetes.io/tls holding the %s certificate in %s "+
		"and its private key in %s (what cert-manager writes)", kind, corev1.TLSCertKey, corev1.TLSPrivateKeyKey)
}

// accountSecretRefs are the Secret keys an Account's link uses, a certificate's Secret
// (tls.certificateSecretRef) as its tls.crt and tls.key.
func accountSecretRefs(a *ilpv1.Account) []secretRef {
	var refs []secretRef
	if l := a.Spec.Link.BTPClient; l != nil {
		refs = appendRefs(refs, &l.TokenSecretRef)
		refs = appendTLSRefs(refs, l.TLS)
	}
	if l := a.Spec.Link.BTPListener; l != nil {
		refs = appendRefs(refs, &l.SecretRef)
		refs = appendServerTLSRefs(refs, l.TLS)
	}
	if l := a.Spec.Link.BTPChildServer; l != nil {
		refs = appendServerTLSRefs(refs, l.TLS)
	}
	if l := a.Spec.Link.HTTP; l != nil {
		if in := l.Incoming; in != nil {
			refs = appendRefs(refs, in.TokenSecretRef, in.JWTSecretRef)
			refs = appendServerTLSRefs(refs, in.TLS)
		}
		if out := l.Outgoing; out != nil {
			refs = appendRefs(refs, out.TokenSecretRef, out.JWTSecretRef)
			refs = appendTLSRefs(refs, out.TLS)
		}
	}
	return refs
}

// appendTLSRefs appends the Secret keys of a dialing link's tls: the authorities' key, and the
// client certificate Secret's tls.crt and tls.key.
func appendTLSRefs(refs []secretRef, t *ilpv1.ClientTLS) []secretRef {
	if t == nil {
		return refs
	}
	return appendCertificateRefs(appendRefs(refs, t.CASecretRef), t.CertificateSecretRef, "client")
}

// appendServerTLSRefs appends the Secret keys of a listening link's tls: the server
// certificate Secret's tls.crt and tls.key, and the client authorities' key.
func appendServerTLSRefs(refs []secretRef, t *ilpv1.ServerTLS) []secretRef {
	if t == nil {
		return refs
	}
	return appendRefs(appendCertificateRefs(refs, &t.CertificateSecretRef, "server"), t.ClientCASecretRef)
}

// appendCertificateRefs appends a certificate Secret's tls.crt and tls.key, with the hint for
// kind ("client", "server"); nil c: none.
func appendCertificateRefs(refs []secretRef, c *ilpv1.TLSSecretRef, kind string) []secretRef {
	if c == nil {
		return refs
	}
	for _, key := range []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey} {
		refs = append(refs, secretRef{ilpv1.SecretKeyRef{Name: c.Name, Key: key}, certificateKeyHint(kind)})
	}
	return refs
}

// appendRefs appends the refs that are set.
func appendRefs(refs []secretRef, opt ...*ilpv1.SecretKeyRef) []secretRef {
	for _, r := range opt {
		if r != nil {
			refs = append(refs, secretRef{SecretKeyRef: *r})
		}
	}
	return refs
}

// connectorSecretRefs are the Secret keys a Connector's own spec uses, which its pods read
// (their Role lists them): not spec.env's (connectorEnvSecretRefs).
func connectorSecretRefs(c *ilpv1.Connector) []secretRef {
	var refs []secretRef
	if r := c.Spec.Routing; r != nil {
		refs = appendRefs(refs, r.RoutingSecretRef)
	}
	if s := c.Spec.Store; s != nil && s.Redis != nil {
		refs = appendRefs(refs, &s.Redis.URLSecretRef)
	}
	return refs
}

// connectorEnvSecretRefs are the Secret keys a Connector's spec.env reads (valueFrom.
// secretKeyRef; optional ones excluded): checked, since a missing one leaves the pods in
// CreateContainerConfigError, but kept out of the pods' Role: the kubelet resolves them, the
// connector does not read them.
func connectorEnvSecretRefs(c *ilpv1.Connector) []secretRef {
	refs := envSecretRefs(c.Spec.Env)
	for i := range refs {
		refs[i].hint = "spec.env reads it (valueFrom.secretKeyRef); the pods cannot start without it"
	}
	return refs
}

// connectorCheckedSecretNames are the Secrets a Connector's references name: those its pods
// read and those of spec.env. A change to one reconciles it (fieldSecretNames).
func connectorCheckedSecretNames(c *ilpv1.Connector) []string {
	return refNames(append(connectorSecretRefs(c), connectorEnvSecretRefs(c)...))
}

// envSecretRefs are the Secret keys env reads (optional ones excluded: the container
// starts without them).
func envSecretRefs(env []corev1.EnvVar) []secretRef {
	var refs []secretRef
	for _, e := range env {
		if vf := e.ValueFrom; vf != nil && vf.SecretKeyRef != nil && !ptrTrue(vf.SecretKeyRef.Optional) {
			refs = appendRefs(refs, &ilpv1.SecretKeyRef{Name: vf.SecretKeyRef.Name, Key: vf.SecretKeyRef.Key})
		}
	}
	return refs
}

// engineSecretRefs are the Secret keys a SettlementEngine's env reads (optional ones excluded:
// the engine starts without them) and the Secrets its envFrom loads (key "").
func engineSecretRefs(e *ilpv1.SettlementEngine) []secretRef {
	refs := envSecretRefs(e.Spec.Env)
	for _, ef := range e.Spec.EnvFrom {
		if ef.SecretRef != nil && !ptrTrue(ef.SecretRef.Optional) {
			refs = appendRefs(refs, &ilpv1.SecretKeyRef{Name: ef.SecretRef.Name})
		}
	}
	return refs
}

func engineSecretNames(e *ilpv1.SettlementEngine) []string { return refNames(engineSecretRefs(e)) }

func ptrTrue(b *bool) bool { return b != nil && *b }

// refNames returns the sorted, distinct Secret names of refs.
func refNames(refs []secretRef) []string {
	names := make([]string, 0, len(refs))
	for _, r := range refs {
		names = append(names, r.Name)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// usedSecretNames is every Secret a connector pod may read: the Connector's own and those of its Accounts.
func usedSecretNames(c *ilpv1.Connector, accounts []ilpv1.Account) []string {
	refs := connectorSecretRefs(c)
	for i := range accounts {
		refs = append(refs, accountSecretRefs(&accounts[i])...)
	}
	return refNames(refs)
}

// checkSecretRefs reads each referenced Secret once, uncached (the operator caches Secrets'
// metadata only), and returns the first problem: a missing Secret or key, with the ref's hint.
// A key "" only needs the Secret.
func checkSecretRefs(ctx context.Context, r client.Reader, ns string, refs []secretRef) (*refProblem, error) {
	read := map[string]*corev1.Secret{}
	for _, ref := range refs {
		s, ok := read[ref.Name]
		if !ok {
			s = &corev1.Secret{}
			if err := r.Get(ctx, client.ObjectKey{Namespace: ns, Name: ref.Name}, s); err != nil {
				if client.IgnoreNotFound(err) != nil {
					return nil, err
				}
				return &refProblem{ReasonSecretNotFound, fmt.Sprintf("Secret %q does not exist in namespace %s", ref.Name, ns)}, nil
			}
			read[ref.Name] = s
		}
		if ref.Key == "" {
			continue
		}
		if _, ok := s.Data[ref.Key]; !ok {
			msg := fmt.Sprintf("Secret %q has no key %q", ref.Name, ref.Key)
			if ref.hint != "" {
				msg += ": " + ref.hint
			}
			return &refProblem{ReasonSecretKeyNotFound, msg}, nil
		}
	}
	return nil, nil
}

// secretVersions maps each existing Secret of names to its resourceVersion, read from the
// metadata-only cache.
func secretVersions(ctx context.Context, c client.Client, ns string, names []string) (map[string]string, error) {
	if len(names) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(names))
	for _, n := range names {
		m := &metav1.PartialObjectMetadata{}
		m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: n}, m); err != nil {
			if client.IgnoreNotFound(err) != nil {
				return nil, err
			}
			continue
		}
		out[n] = m.ResourceVersion
	}
	return out, nil
}
