package controllers

import (
	"context"
	"fmt"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
)

// servedPorts is each Service port as name:port:appProtocol ("-" for none), and the ports
// whose targetPort or protocol is not the plain TCP port of the same number.
func servedPorts(ports []corev1.ServicePort) (out, odd []string) {
	for _, p := range ports {
		proto := "-"
		if p.AppProtocol != nil {
			proto = *p.AppProtocol
		}
		out = append(out, fmt.Sprintf("%s:%d:%s", p.Name, p.Port, proto))
		if p.TargetPort != intstr.FromInt32(p.Port) || p.Protocol != corev1.ProtocolTCP {
			odd = append(odd, fmt.Sprintf("%+v", p))
		}
	}
	return out, odd
}

// TestPeerServicePorts: every peer Service port carries the appProtocol of what its Account
// serves — kubernetes.io/ws or, with tls, kubernetes.io/wss for BTP; http or, with tls, https
// for ILP-over-HTTP — under the unchanged name; and of two Accounts on one port, the name and
// the appProtocol are the same whichever order the Accounts are listed in.
func TestPeerServicePorts(t *testing.T) {
	tls := &ilpv1.ServerTLS{CertificateSecretRef: ilpv1.TLSSecretRef{Name: "server"}}
	listener := func(port int32, tls *ilpv1.ServerTLS) ilpv1.AccountLink {
		return ilpv1.AccountLink{BTPListener: &ilpv1.BTPListenerLink{Port: port, SecretRef: ilpv1.SecretKeyRef{Name: "s", Key: "k"}, TLS: tls}}
	}
	children := func(port int32, tls *ilpv1.ServerTLS) ilpv1.AccountLink {
		return ilpv1.AccountLink{BTPChildServer: &ilpv1.BTPChildServerLink{Port: port, TLS: tls}}
	}
	incoming := func(port int32, tls *ilpv1.ServerTLS) ilpv1.AccountLink {
		in := httpIn(port)
		in.TLS = tls
		return ilpv1.AccountLink{HTTP: &ilpv1.HTTPLink{Incoming: in, Outgoing: httpOut("https://peer.example/ilp")}}
	}
	outgoing := ilpv1.AccountLink{HTTP: &ilpv1.HTTPLink{Outgoing: httpOut("https://peer.example/ilp")}}
	dialer := ilpv1.AccountLink{BTPClient: &ilpv1.BTPClientLink{URL: "btp+wss://peer.example/ilp"}}

	cases := []struct {
		name  string
		links []ilpv1.AccountLink
		want  []string
	}{
		{"btpListener", []ilpv1.AccountLink{listener(7768, nil)}, []string{"btp-7768:7768:kubernetes.io/ws"}},
		{"btpListener with tls", []ilpv1.AccountLink{listener(7768, tls)}, []string{"btp-7768:7768:kubernetes.io/wss"}},
		{"btpChildServer", []ilpv1.AccountLink{children(7790, nil)}, []string{"btp-7790:7790:kubernetes.io/ws"}},
		{"btpChildServer with tls", []ilpv1.AccountLink{children(7790, tls)}, []string{"btp-7790:7790:kubernetes.io/wss"}},
		{"http.incoming", []ilpv1.AccountLink{incoming(7769, nil)}, []string{"http-7769:7769:http"}},
		{"http.incoming with tls", []ilpv1.AccountLink{incoming(7769, tls)}, []string{"http-7769:7769:https"}},
		{"links that listen nowhere", []ilpv1.AccountLink{outgoing, dialer}, nil},
		{"an Account on the admin port is left out", []ilpv1.AccountLink{incoming(7780, tls), children(7780, nil)}, nil},
		{"several, sorted by port", []ilpv1.AccountLink{incoming(7800, tls), children(7790, nil), listener(7768, tls), incoming(7769, nil)},
			[]string{"btp-7768:7768:kubernetes.io/wss", "http-7769:7769:http", "btp-7790:7790:kubernetes.io/ws", "http-7800:7800:https"}},
		// Two Accounts on one port (the pods refuse the younger): one Service port, the same
		// whatever the order.
		{"btp with and without tls on one port", []ilpv1.AccountLink{listener(7768, tls), children(7768, nil)}, []string{"btp-7768:7768:kubernetes.io/ws"}},
		{"http with and without tls on one port", []ilpv1.AccountLink{incoming(7769, tls), incoming(7769, nil)}, []string{"http-7769:7769:http"}},
		{"btp with tls and plain http on one port", []ilpv1.AccountLink{incoming(7768, nil), listener(7768, tls)}, []string{"btp-7768:7768:kubernetes.io/wss"}},
		{"plain btp and http with tls on one port", []ilpv1.AccountLink{incoming(7768, tls), children(7768, nil)}, []string{"btp-7768:7768:kubernetes.io/ws"}},
	}
	conn := sampleConnector("ns")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var accounts []ilpv1.Account
			for i, l := range tc.links {
				a := sampleAccount("ns", fmt.Sprintf("a%d", i), "alice")
				a.Spec.Link = l
				accounts = append(accounts, *a)
			}
			for _, order := range []string{"as listed", "reversed"} {
				if order == "reversed" {
					slices.Reverse(accounts)
				}
				got, odd := servedPorts(peerServicePorts(conn, accounts))
				if !slices.Equal(got, tc.want) {
					t.Errorf("%s: ports %v, want %v", order, got, tc.want)
				}
				if len(odd) != 0 {
					t.Errorf("%s: ports not TCP to their own number: %v", order, odd)
				}
			}
		})
	}
}

// waitPeerProtocols waits until the peer Service alice has these ports (servedPorts).
func waitPeerProtocols(t *testing.T, ns string, want []string) {
	t.Helper()
	eventually(t, func() error {
		var svc corev1.Service
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "alice"}, &svc); err != nil {
			return err
		}
		got, _ := servedPorts(svc.Spec.Ports)
		return checkf(slices.Equal(got, want), fmt.Sprintf("peer Service ports %v, want %v", got, want))
	})
}

// TestPeerServiceAppProtocolFollowsTLS: the peer Service's ports get their appProtocol, and
// setting or removing an Account's tls rewrites it (the Account change reconciles the
// Service), the port names staying as they were.
func TestPeerServiceAppProtocolFollowsTLS(t *testing.T) {
	ns := namespace(t)
	bob := sampleAccount(ns, "bob", "alice")
	carol := httpAccount(ns, "carol", &ilpv1.HTTPLink{Incoming: httpIn(7769)})
	mustCreate(t, secret(ns, "bob", map[string]string{"secret": "b", "in": "i"}), tlsSecret(ns, "server", "cert"),
		sampleConnector(ns), bob, carol)
	waitPeerProtocols(t, ns, []string{"btp-7768:7768:kubernetes.io/ws", "http-7769:7769:http"})

	tls := &ilpv1.ServerTLS{CertificateSecretRef: ilpv1.TLSSecretRef{Name: "server"}}
	update(t, bob, func(a *ilpv1.Account) { a.Spec.Link.BTPListener.TLS = tls })
	update(t, carol, func(a *ilpv1.Account) { a.Spec.Link.HTTP.Incoming.TLS = tls })
	waitPeerProtocols(t, ns, []string{"btp-7768:7768:kubernetes.io/wss", "http-7769:7769:https"})

	update(t, carol, func(a *ilpv1.Account) { a.Spec.Link.HTTP.Incoming.TLS = nil })
	waitPeerProtocols(t, ns, []string{"btp-7768:7768:kubernetes.io/wss", "http-7769:7769:http"})
}
