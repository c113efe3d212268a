package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
)

// Text that only CEL evaluation noise or a bare pattern puts in an admission error: a value the
// rules refuse must be told what to write, once.
var admissionNoise = []string{"evaluating rule", "type conversion error", "google.protobuf.Duration", "should match"}

// TestAdmissionMessages creates bad objects in the real API server and checks that each is
// refused with a message that says what to write instead, without the noise of a rule that
// could not evaluate, and without quoting a value that may hold a credential.
func TestAdmissionMessages(t *testing.T) {
	ns := namespace(t)
	cases := []struct {
		name   string
		mutate func(c *ilpv1.Connector, a *ilpv1.Account, r *ilpv1.Route)
		want   []string
		// noise lists the admissionNoise entries this case may show: a pattern kept on purpose
		// (a rate's: see DecimalString; a duration's: its message is the one clear message).
		noise []string
		// secret must not appear in the error: the value may carry a credential.
		secret string
		// settleEvery is written as is: a metav1.Duration cannot hold what the pattern refuses.
		settleEvery string
	}{
		{name: "maxPacketAmount 0", mutate: func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			a.Spec.MaxPacketAmount = ptr.To(ilpv1.AmountString("0"))
		}, want: []string{"spec.maxPacketAmount", "must be at least 1: for no limit, leave the field out"}},
		{name: "throughput amount 0.0", mutate: func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			a.Spec.Throughput = &ilpv1.ThroughputSpec{OutgoingAmount: ptr.To(ilpv1.AmountString("0.0"))}
		}, want: []string{"spec.throughput.outgoingAmount", "must be at least 1"}},
		{name: "maxPacketAmount with a point", mutate: func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			a.Spec.MaxPacketAmount = ptr.To(ilpv1.AmountString("1.5"))
		}, want: []string{"spec.maxPacketAmount", "whole number of base units from 1 to 18446744073709551615 (uint64)", "no sign, decimal point"}},
		{name: "maxPacketAmount above uint64", mutate: func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			a.Spec.MaxPacketAmount = ptr.To(ilpv1.AmountString("18446744073709551616"))
		}, want: []string{"spec.maxPacketAmount", "(uint64)"}},
		{name: "env sets a CONNECTOR_ variable", mutate: func(c *ilpv1.Connector, _ *ilpv1.Account, _ *ilpv1.Route) {
			c.Spec.Env = []corev1.EnvVar{{Name: "HTTPS_PROXY", Value: "http://proxy:3128"}, {Name: "CONNECTOR_ACCOUNTS", Value: "{}"}}
		}, want: []string{"spec.env", "must not set CONNECTOR_* (the configuration comes from the Connector and its Accounts)"}},
		{name: "env sets POD_NAME", mutate: func(c *ilpv1.Connector, _ *ilpv1.Account, _ *ilpv1.Route) {
			c.Spec.Env = []corev1.EnvVar{{Name: "POD_NAME", Value: "x"}}
		}, want: []string{"spec.env", "POD_NAMESPACE, POD_NAME or GOMEMLIMIT (the operator sets them"}},
		{name: "spread 1", mutate: func(c *ilpv1.Connector, _ *ilpv1.Account, _ *ilpv1.Route) {
			c.Spec.Rates.Spread = "1"
		}, want: []string{"spec.rates.spread", "up to but below 1", `"0.002" for 0.2 %`}},
		{name: "spread as a percentage", mutate: func(c *ilpv1.Connector, _ *ilpv1.Account, _ *ilpv1.Route) {
			c.Spec.Rates.Spread = "0.2%"
		}, want: []string{"spec.rates.spread", "spread is a fraction, not a percentage"}},
		{name: "static rate 0", mutate: func(c *ilpv1.Connector, _ *ilpv1.Account, _ *ilpv1.Route) {
			c.Spec.Rates.Rates["EUR"] = "0"
		}, want: []string{"spec.rates.rates", "a rate must be a decimal above 0", "leave it out of the table"}, noise: []string{"should match"}},
		{name: "static rate with an exponent", mutate: func(c *ilpv1.Connector, _ *ilpv1.Account, _ *ilpv1.Route) {
			c.Spec.Rates.Rates["EUR"] = "1e3"
		}, want: []string{"spec.rates.rates", "a rate must be a decimal above 0"}, noise: []string{"should match"}},
		{name: "ilpAddress without scheme", mutate: func(c *ilpv1.Connector, _ *ilpv1.Account, _ *ilpv1.Route) {
			c.Spec.ILPAddress = "alice"
		}, want: []string{"spec.ilpAddress", "must be an ILP address (RFC 15)", "e.g. test.alice"}},
		{name: "ilpAddress of a scheme alone", mutate: func(c *ilpv1.Connector, _ *ilpv1.Account, _ *ilpv1.Route) {
			c.Spec.ILPAddress = "test"
		}, want: []string{"spec.ilpAddress", "one or more segments"}},
		{name: "targetPrefix with a space", mutate: func(_ *ilpv1.Connector, _ *ilpv1.Account, r *ilpv1.Route) {
			r.Spec.TargetPrefix = "test.bob smith"
		}, want: []string{"spec.targetPrefix", "must be an ILP address prefix (RFC 15)"}},
		{name: "btpClient url with user and token", mutate: func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			a.Spec.Link = ilpv1.AccountLink{BTPClient: &ilpv1.BTPClientLink{URL: "btp+ws://user:s3cr3t-token@bob:7768",
				TokenSecretRef: ilpv1.SecretKeyRef{Name: "bob", Key: "token"}}}
		}, want: []string{"spec.link.btpClient.url", "must not carry credentials", "tokenSecretRef", "username"}, secret: "s3cr3t-token"},
		{name: "btpClient url with the token only (the JS way)", mutate: func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			a.Spec.Link = ilpv1.AccountLink{BTPClient: &ilpv1.BTPClientLink{URL: "btp+wss://:s3cr3t-token@bob.example/btp",
				TokenSecretRef: ilpv1.SecretKeyRef{Name: "bob", Key: "token"}}}
		}, want: []string{"spec.link.btpClient.url", "must not carry credentials"}, secret: "s3cr3t-token"},
		{name: "btpClient url of another scheme", mutate: func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			a.Spec.Link = ilpv1.AccountLink{BTPClient: &ilpv1.BTPClientLink{URL: "ws://bob:7768",
				TokenSecretRef: ilpv1.SecretKeyRef{Name: "bob", Key: "token"}}}
		}, want: []string{"spec.link.btpClient.url", "must be btp+ws://host:port/path"}},
		{name: "http outgoing url with credentials", mutate: func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			a.Spec.Link = ilpv1.AccountLink{HTTP: &ilpv1.HTTPLink{Outgoing: httpOut("https://us:s3cr3t-token@bob.example/ilp")}}
		}, want: []string{"spec.link.http.outgoing.url", "must not carry credentials"}, secret: "s3cr3t-token"},
		{name: "http outgoing url with a space", mutate: func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			a.Spec.Link = ilpv1.AccountLink{HTTP: &ilpv1.HTTPLink{Outgoing: httpOut("https://bob.example/my ilp")}}
		}, want: []string{"spec.link.http.outgoing.url", "must be http://host[:port][/path] or https://…, without spaces"}},
		{name: "btpClient tls on btp+ws://", mutate: func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			a.Spec.Link = ilpv1.AccountLink{BTPClient: tlsBTPClient("btp+ws://bob:7768", &ilpv1.ClientTLS{CASecretRef: &ilpv1.SecretKeyRef{Name: "ca", Key: "ca.crt"}})}
		}, want: []string{"spec.link.btpClient.tls", "applies to a btp+wss:// url only", "change url to btp+wss://"}},
		{name: "btpClient tls with nothing set", mutate: func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			a.Spec.Link = ilpv1.AccountLink{BTPClient: tlsBTPClient("btp+wss://bob.example/btp", &ilpv1.ClientTLS{})}
		}, want: []string{"spec.link.btpClient.tls", "tls needs caSecretRef, certificateSecretRef or serverName", "leave tls out"}},
		{name: "btpClient tls serverName with a port", mutate: func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			a.Spec.Link = ilpv1.AccountLink{BTPClient: tlsBTPClient("btp+wss://10.0.0.1/btp", &ilpv1.ClientTLS{ServerName: "bob.example:443"})}
		}, want: []string{"spec.link.btpClient.tls.serverName", "must be a DNS name such as bob.example"}},
		{name: "btpClient tls serverName of 254 characters", mutate: func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			a.Spec.Link = ilpv1.AccountLink{BTPClient: tlsBTPClient("btp+wss://10.0.0.1/btp", &ilpv1.ClientTLS{ServerName: strings.Repeat("a.", 126) + "ab"})}
		}, want: []string{"spec.link.btpClient.tls.serverName", "253"}},
		{name: "http outgoing tls on http://", mutate: func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			out := httpOut("http://bob:7768/ilp")
			out.TLS = &ilpv1.ClientTLS{CertificateSecretRef: &ilpv1.TLSSecretRef{Name: "alice-client"}}
			a.Spec.Link = ilpv1.AccountLink{HTTP: &ilpv1.HTTPLink{Outgoing: out}}
		}, want: []string{"spec.link.http.outgoing.tls", "applies to an https:// url only", "change url to https://"}},
		{name: "http outgoing tls with nothing set", mutate: func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			out := httpOut("https://bob.example/ilp")
			out.TLS = &ilpv1.ClientTLS{}
			a.Spec.Link = ilpv1.AccountLink{HTTP: &ilpv1.HTTPLink{Outgoing: out}}
		}, want: []string{"spec.link.http.outgoing.tls", "tls needs caSecretRef, certificateSecretRef or serverName"}},
		{name: "http outgoing tls certificate Secret without a name", mutate: func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			out := httpOut("https://bob.example/ilp")
			out.TLS = &ilpv1.ClientTLS{CertificateSecretRef: &ilpv1.TLSSecretRef{}}
			a.Spec.Link = ilpv1.AccountLink{HTTP: &ilpv1.HTTPLink{Outgoing: out}}
		}, want: []string{"spec.link.http.outgoing.tls.certificateSecretRef.name"}},
		{name: "btpListener tls clientNames without clientCASecretRef", mutate: func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			a.Spec.Link.BTPListener.TLS = &ilpv1.ServerTLS{CertificateSecretRef: ilpv1.TLSSecretRef{Name: "alice-server"}, ClientNames: []string{"bob.peering.example"}}
		}, want: []string{"spec.link.btpListener.tls.clientNames", "tls.clientNames needs clientCASecretRef", "set clientCASecretRef", "or remove clientNames"}},
		{name: "http incoming tls clientNames without clientCASecretRef", mutate: func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			in := httpIn(7769)
			in.TLS = &ilpv1.ServerTLS{CertificateSecretRef: ilpv1.TLSSecretRef{Name: "alice-server"}, ClientNames: []string{"spiffe://peering.example/bob"}}
			a.Spec.Link = ilpv1.AccountLink{HTTP: &ilpv1.HTTPLink{Incoming: in}}
		}, want: []string{"spec.link.http.incoming.tls.clientNames", "tls.clientNames needs clientCASecretRef"}},
		{name: "tls clientNames with an empty name", mutate: func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			a.Spec.Link.BTPListener.TLS = peeringServerTLS("bob.peering.example", "")
		}, want: []string{"spec.link.btpListener.tls.clientNames[1]", "at least 1 chars long"}},
		{name: "tls clientNames with a name of 254 characters", mutate: func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			a.Spec.Link.BTPListener.TLS = peeringServerTLS(strings.Repeat("a.", 126) + "ab")
		}, want: []string{"spec.link.btpListener.tls.clientNames[0]", "253"}},
		{name: "tls clientNames with 65 names", mutate: func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			names := make([]string, 65)
			for i := range names {
				names[i] = fmt.Sprintf("peer%d.peering.example", i)
			}
			a.Spec.Link.BTPListener.TLS = peeringServerTLS(names...)
		}, want: []string{"spec.link.btpListener.tls.clientNames", "must have at most 64 items"}},
		{name: "balance.minimum of 19 digits beyond int64", mutate: func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			a.Spec.Balance.Minimum = ptr.To(ilpv1.IntegerString("-9999999999999999999"))
		}, want: []string{"spec.balance.minimum", "(int64)"}},
		{name: "balance.maximum with a point", mutate: func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			a.Spec.Balance.Maximum = ptr.To(ilpv1.IntegerString("1.5"))
		}, want: []string{"spec.balance.maximum", "whole number of base units", "(int64)"}},
		{name: "settleTo beyond int64 beside a threshold", mutate: func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			a.Spec.Balance.SettleThreshold = ptr.To(ilpv1.IntegerString("-10"))
			a.Spec.Balance.SettleTo = ptr.To(ilpv1.IntegerString("9999999999999999999"))
		}, want: []string{"spec.balance.settleTo", "(int64)"}},
		{name: "settleThreshold beyond int64", mutate: func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			a.Spec.Balance.SettleThreshold = ptr.To(ilpv1.IntegerString("-9999999999999999999"))
		}, want: []string{"spec.balance.settleThreshold", "(int64)"}},
		{name: "settleEvery in days", mutate: func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			a.Spec.SettlementEngineRef = "xrp"
		}, settleEvery: "1d", want: []string{"spec.settleEvery"}, noise: []string{"should match"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, a, r := admissionObjects(ns, fmt.Sprintf("msg%d", i))
			tc.mutate(c, a, r)
			var errs []string
			for _, o := range []client.Object{c, a, r} {
				if err := createDryRun(o, tc.settleEvery); err != nil {
					errs = append(errs, err.Error())
				}
			}
			got := strings.Join(errs, "\n")
			t.Log(got)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("got %q, want it to contain %q", got, w)
				}
			}
			for _, n := range admissionNoise {
				if strings.Contains(got, n) && !slices.Contains(tc.noise, n) {
					t.Errorf("got %q, which contains %q", got, n)
				}
			}
			if tc.secret != "" && strings.Contains(got, tc.secret) {
				t.Errorf("got %q, which quotes the credential %q", got, tc.secret)
			}
		})
	}
}

// createDryRun creates o in a dry run; an Account with settleEvery set goes through
// unstructured, with that value.
func createDryRun(o client.Object, settleEvery string) error {
	a, ok := o.(*ilpv1.Account)
	if !ok || settleEvery == "" {
		return k8s.Create(context.Background(), o, client.DryRunAll)
	}
	u, err := toUnstructured(a)
	if err != nil {
		return err
	}
	u.SetGroupVersionKind(ilpv1.GroupVersion.WithKind("Account"))
	if err := setNested(u.Object, settleEvery, "spec", "settleEvery"); err != nil {
		return err
	}
	return k8s.Create(context.Background(), u, client.DryRunAll)
}

// TestAdmissionMessagesAccept checks that the rules which replaced patterns admit what the
// patterns did at their edges.
func TestAdmissionMessagesAccept(t *testing.T) {
	ns := namespace(t)
	cases := []struct {
		name   string
		mutate func(c *ilpv1.Connector, a *ilpv1.Account, r *ilpv1.Route)
	}{
		{"btp+wss url with an @ in its path", func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			a.Spec.Link = ilpv1.AccountLink{BTPClient: &ilpv1.BTPClientLink{URL: "btp+wss://bob.example:443/btp/@alice",
				Username: "alice", TokenSecretRef: ilpv1.SecretKeyRef{Name: "bob", Key: "token"}}}
		}},
		{"btp+ws url without path", func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			a.Spec.Link = ilpv1.AccountLink{BTPClient: &ilpv1.BTPClientLink{URL: "btp+ws://bob:7768",
				TokenSecretRef: ilpv1.SecretKeyRef{Name: "bob", Key: "token"}}}
		}},
		{"btpClient tls with every field", func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			a.Spec.Link = ilpv1.AccountLink{BTPClient: tlsBTPClient("btp+wss://10.0.0.1:443/btp", &ilpv1.ClientTLS{
				CASecretRef: &ilpv1.SecretKeyRef{Name: "peering-ca", Key: "ca.crt"}, CertificateSecretRef: &ilpv1.TLSSecretRef{Name: "alice-client"},
				ServerName: "bob-connector.peering.example"})}
		}},
		{"btpClient tls with serverName only, of 253 characters", func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			a.Spec.Link = ilpv1.AccountLink{BTPClient: tlsBTPClient("btp+wss://10.0.0.1/btp", &ilpv1.ClientTLS{ServerName: strings.Repeat("a.", 125) + "abc"})}
		}},
		{"http outgoing tls with a client certificate only", func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			out := httpOut("https://bob.example:8443/accounts/alice/ilp")
			out.TLS = &ilpv1.ClientTLS{CertificateSecretRef: &ilpv1.TLSSecretRef{Name: "alice-client"}}
			a.Spec.Link = ilpv1.AccountLink{HTTP: &ilpv1.HTTPLink{Outgoing: out}}
		}},
		{"http outgoing tls with a CA only", func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			out := httpOut("https://bob.example/ilp")
			out.TLS = &ilpv1.ClientTLS{CASecretRef: &ilpv1.SecretKeyRef{Name: "peering-ca", Key: "ca.crt"}}
			a.Spec.Link = ilpv1.AccountLink{HTTP: &ilpv1.HTTPLink{Outgoing: out}}
		}},
		{"tls on a btpListener with a client CA", func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			a.Spec.Link.BTPListener.TLS = &ilpv1.ServerTLS{CertificateSecretRef: ilpv1.TLSSecretRef{Name: "alice-server"},
				ClientCASecretRef: &ilpv1.SecretKeyRef{Name: "peering-ca", Key: "ca.crt"}}
		}},
		{"tls on a btpListener with a client CA and clientNames", func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			a.Spec.Link.BTPListener.TLS = peeringServerTLS("bob.peering.example", "spiffe://peering.example/bob", strings.Repeat("a.", 125)+"abc")
		}},
		{"tls on a btpChildServer with a client CA and 64 clientNames", func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			names := make([]string, 64)
			for i := range names {
				names[i] = fmt.Sprintf("child%d@peering.example", i)
			}
			a.Spec.Relation = ilpv1.RelationChild
			a.Spec.Link = ilpv1.AccountLink{BTPChildServer: &ilpv1.BTPChildServerLink{Port: 7770, TLS: peeringServerTLS(names...)}}
		}},
		{"tls on a btpChildServer", func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			a.Spec.Relation = ilpv1.RelationChild
			a.Spec.Link = ilpv1.AccountLink{BTPChildServer: &ilpv1.BTPChildServerLink{Port: 7770, TLS: &ilpv1.ServerTLS{CertificateSecretRef: ilpv1.TLSSecretRef{Name: "alice-server"}}}}
		}},
		{"tls on http.incoming", func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			in := httpIn(7769)
			in.TLS = &ilpv1.ServerTLS{CertificateSecretRef: ilpv1.TLSSecretRef{Name: "alice-server"}, ClientCASecretRef: &ilpv1.SecretKeyRef{Name: "peering-ca", Key: "ca.crt"}}
			a.Spec.Link = ilpv1.AccountLink{HTTP: &ilpv1.HTTPLink{Incoming: in}}
		}},
		{"http url with an @ in its query", func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			a.Spec.Link = ilpv1.AccountLink{HTTP: &ilpv1.HTTPLink{Outgoing: httpOut("http://bob:7768/ilp?to=a@b")}}
		}},
		{"largest amounts, 19-digit limits", func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			a.Spec.MaxPacketAmount = ptr.To(ilpv1.AmountString("18446744073709551615"))
			a.Spec.Balance = &ilpv1.BalanceSpec{Minimum: ptr.To(ilpv1.IntegerString("-9223372036854775808")),
				Maximum: ptr.To(ilpv1.IntegerString("9223372036854775807")), SettleThreshold: ptr.To(ilpv1.IntegerString("-1000000000000000000")),
				SettleTo: ptr.To(ilpv1.IntegerString("0"))}
		}},
		{"spread .5, rate 0.5", func(c *ilpv1.Connector, _ *ilpv1.Account, _ *ilpv1.Route) {
			c.Spec.Rates.Spread, c.Spec.Rates.Rates["EUR"] = ".5", "0.5"
		}},
		{"settleEvery of 1h30m", func(_ *ilpv1.Connector, a *ilpv1.Account, _ *ilpv1.Route) {
			a.Spec.SettlementEngineRef = "xrp"
			a.Spec.SettleEvery = &metav1.Duration{Duration: 90 * time.Minute}
		}},
		{"targetPrefix of a scheme alone", func(_ *ilpv1.Connector, _ *ilpv1.Account, r *ilpv1.Route) { r.Spec.TargetPrefix = "g" }},
		{"address of many segments", func(c *ilpv1.Connector, _ *ilpv1.Account, _ *ilpv1.Route) { c.Spec.ILPAddress = "test3.a-b.c_d.e~f" }},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, a, r := admissionObjects(ns, fmt.Sprintf("ok%d", i))
			tc.mutate(c, a, r)
			for _, o := range []client.Object{c, a, r} {
				if err := k8s.Create(context.Background(), o, client.DryRunAll); err != nil {
					t.Errorf("create %T: %v", o, err)
				}
			}
		})
	}
}

// TestAdmissionAddressChange checks the messages of the address's transition rules: a
// Connector's address is fixed while it runs, whichever field gives it.
func TestAdmissionAddressChange(t *testing.T) {
	ns := namespace(t)
	fixed, inheriting := sampleConnector(ns), sampleConnector(ns)
	fixed.Name = "fixed"
	inheriting.Name, inheriting.Spec.ILPAddress, inheriting.Spec.InheritAddressFrom = "inheriting", "", "parent"
	mustCreate(t, fixed, inheriting)
	cases := []struct {
		name   string
		obj    *ilpv1.Connector
		mutate func(c *ilpv1.Connector)
		want   []string
		not    string
	}{
		{"inheritAddressFrom to ilpAddress", inheriting, func(c *ilpv1.Connector) {
			c.Spec.InheritAddressFrom, c.Spec.ILPAddress = "", "test.alice"
		}, []string{"ilpAddress cannot replace inheritAddressFrom", "delete the Connector and create it again with ilpAddress"}, "ilpAddress is immutable"},
		{"ilpAddress to inheritAddressFrom", fixed, func(c *ilpv1.Connector) {
			c.Spec.InheritAddressFrom, c.Spec.ILPAddress = "parent", ""
		}, []string{"inheritAddressFrom cannot replace ilpAddress", "create it again with inheritAddressFrom"}, "ilpAddress is immutable"},
		{"another ilpAddress", fixed, func(c *ilpv1.Connector) {
			c.Spec.ILPAddress = "test.alice2"
		}, []string{"ilpAddress is immutable: running pods cannot change their address", "delete the Connector and create it again"}, "cannot replace"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tryUpdate(tc.obj, func(o client.Object) { tc.mutate(o.(*ilpv1.Connector)) })
			if err == nil {
				t.Fatal("update admitted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %v, want it to contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), tc.not) {
				t.Errorf("got %v, which contains %q", err, tc.not)
			}
		})
	}
}

// admissionObjects are a sample Connector, Account and Route of ns, all named name, for a
// case to change and try at admission.
func admissionObjects(ns, name string) (*ilpv1.Connector, *ilpv1.Account, *ilpv1.Route) {
	c, a := sampleConnector(ns), sampleAccount(ns, "acct", "alice")
	r := &ilpv1.Route{Spec: ilpv1.RouteSpec{ConnectorRef: "alice", TargetPrefix: "test.bob", NextHop: "acct"}}
	c.Name, a.Name = name, name
	r.Namespace, r.Name = ns, name
	return c, a, r
}

// peeringServerTLS is a listening tls with a server certificate, the peering CA as client CA,
// and names as clientNames.
func peeringServerTLS(names ...string) *ilpv1.ServerTLS {
	return &ilpv1.ServerTLS{CertificateSecretRef: ilpv1.TLSSecretRef{Name: "alice-server"},
		ClientCASecretRef: &ilpv1.SecretKeyRef{Name: "peering-ca", Key: "ca.crt"}, ClientNames: names}
}

// tlsBTPClient is a btpClient link to url with a token and tls.
func tlsBTPClient(url string, tls *ilpv1.ClientTLS) *ilpv1.BTPClientLink {
	return &ilpv1.BTPClientLink{URL: url, TokenSecretRef: ilpv1.SecretKeyRef{Name: "bob", Key: "token"}, TLS: tls}
}
