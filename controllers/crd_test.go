package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
)

func sampleConnector(ns string) *ilpv1.Connector {
	return &ilpv1.Connector{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "alice"},
		Spec: ilpv1.ConnectorSpec{
			ILPAddress: "test.alice", Network: "test",
			Rates: &ilpv1.RatesSpec{Backend: "static", Spread: "0.002", Rates: map[string]ilpv1.DecimalString{"USD": "1", "EUR": "1.08"}},
		},
	}
}

func sampleAccount(ns, name, connector string) *ilpv1.Account {
	return &ilpv1.Account{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: ilpv1.AccountSpec{
			ConnectorRef: connector, Relation: ilpv1.RelationPeer, AssetCode: "USD", AssetScale: 9,
			Link:    ilpv1.AccountLink{BTPListener: &ilpv1.BTPListenerLink{Port: 7768, SecretRef: ilpv1.SecretKeyRef{Name: "bob", Key: "secret"}}},
			Balance: &ilpv1.BalanceSpec{Minimum: ptr.To(ilpv1.IntegerString("-1000000")), Maximum: ptr.To(ilpv1.IntegerString("1000000"))},
		},
	}
}

// httpIn and httpOut are ILP-over-HTTP directions with a token.
func httpIn(port int32) *ilpv1.HTTPIncoming {
	return &ilpv1.HTTPIncoming{Port: port, TokenSecretRef: &ilpv1.SecretKeyRef{Name: "bob", Key: "in"}}
}

func httpOut(url string) *ilpv1.HTTPOutgoing {
	return &ilpv1.HTTPOutgoing{URL: url, TokenSecretRef: &ilpv1.SecretKeyRef{Name: "bob", Key: "out"}}
}

// TestCreateAndReadEveryKind stores one object of each kind in the real API server and reads it
// back: it fails when a CRD is missing, does not match the Go types, or the binaries are broken.
func TestCreateAndReadEveryKind(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	objs := []client.Object{
		sampleConnector(ns),
		sampleAccount(ns, "bob", "alice"),
		httpAccount(ns, "carol", &ilpv1.HTTPLink{Mode: ilpv1.HTTPModeAsync,
			Incoming: &ilpv1.HTTPIncoming{Port: 7769, TokenSecretRef: &ilpv1.SecretKeyRef{Name: "carol", Key: "in"}, JWTSecretRef: &ilpv1.SecretKeyRef{Name: "carol", Key: "jwt-in"}},
			Outgoing: &ilpv1.HTTPOutgoing{URL: "https://carol.example/ilp", TokenSecretRef: &ilpv1.SecretKeyRef{Name: "carol", Key: "out"},
				JWTSecretRef: &ilpv1.SecretKeyRef{Name: "carol", Key: "jwt-out"}, CallbackURL: "https://alice.example/cb"}}),
		&ilpv1.Route{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "to-bob"},
			Spec: ilpv1.RouteSpec{ConnectorRef: "alice", TargetPrefix: "test.bob", NextHop: "bob"}},
		&ilpv1.SettlementEngine{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "xrp"},
			Spec: ilpv1.SettlementEngineSpec{AssetCode: "XRP", AssetScale: 6, Image: "example/xrp-engine:1", Port: 3000,
				Env: []corev1.EnvVar{{Name: "LEDGER", Value: "testnet"}}}},
	}
	for _, o := range objs {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatalf("create %T: %v", o, err)
		}
		// The client reads from the manager's cache, which sees the new object shortly after.
		back := get(t, o.GetNamespace(), o.GetName(), o.DeepCopyObject().(client.Object))
		if got, want := specOf(back), specOf(o); !equality.Semantic.DeepEqual(got, want) {
			t.Errorf("%T spec read back as %+v, want %+v", o, got, want)
		}
	}
}

func specOf(o client.Object) any {
	switch v := o.(type) {
	case *ilpv1.Connector:
		return v.Spec
	case *ilpv1.Account:
		return v.Spec
	case *ilpv1.Route:
		return v.Spec
	case *ilpv1.SettlementEngine:
		return v.Spec
	}
	return nil
}

// TestAdmissionRejects checks that the CRDs' validation refuses bad objects with a message a
// person can act on.
func TestAdmissionRejects(t *testing.T) {
	ns := namespace(t)
	cases := []struct {
		name   string
		mutate func(c *ilpv1.Connector, a *ilpv1.Account)
		want   string
	}{
		{"bad address", func(c *ilpv1.Connector, _ *ilpv1.Account) { c.Spec.ILPAddress = "alice" }, "spec.ilpAddress"},
		{"no address", func(c *ilpv1.Connector, _ *ilpv1.Account) { c.Spec.ILPAddress = "" }, "set ilpAddress or inheritAddressFrom"},
		{"production with test address", func(c *ilpv1.Connector, _ *ilpv1.Account) { c.Spec.Network = "production" }, "RFC 34"},
		{"spread as float noise", func(c *ilpv1.Connector, _ *ilpv1.Account) { c.Spec.Rates.Spread = "2e-3" }, "spec.rates.spread"},
		{"min above max", func(_ *ilpv1.Connector, a *ilpv1.Account) {
			a.Spec.Balance.Minimum = ptr.To(ilpv1.IntegerString("5"))
			a.Spec.Balance.Maximum = ptr.To(ilpv1.IntegerString("4"))
		}, "balance.minimum must be <= balance.maximum"},
		{"two links", func(_ *ilpv1.Connector, a *ilpv1.Account) {
			a.Spec.Link.BTPChildServer = &ilpv1.BTPChildServerLink{Port: 7769}
		}, "set exactly one of btpClient, btpListener, btpChildServer, http"},
		{"btp and http links", func(_ *ilpv1.Connector, a *ilpv1.Account) {
			a.Spec.Link.HTTP = &ilpv1.HTTPLink{Outgoing: httpOut("https://bob.example/ilp")}
		}, "set exactly one of btpClient, btpListener, btpChildServer, http"},
		{"http without a direction", func(_ *ilpv1.Connector, a *ilpv1.Account) {
			a.Spec.Link = ilpv1.AccountLink{HTTP: &ilpv1.HTTPLink{}}
		}, "http needs incoming"},
		{"http incoming without credential", func(_ *ilpv1.Connector, a *ilpv1.Account) {
			a.Spec.Link = ilpv1.AccountLink{HTTP: &ilpv1.HTTPLink{Incoming: &ilpv1.HTTPIncoming{Port: 7769}}}
		}, "http.incoming needs tokenSecretRef or jwtSecretRef"},
		{"http outgoing without credential", func(_ *ilpv1.Connector, a *ilpv1.Account) {
			a.Spec.Link = ilpv1.AccountLink{HTTP: &ilpv1.HTTPLink{Outgoing: &ilpv1.HTTPOutgoing{URL: "https://bob.example/ilp"}}}
		}, "http.outgoing needs tokenSecretRef or jwtSecretRef"},
		{"http incoming port 0", func(_ *ilpv1.Connector, a *ilpv1.Account) {
			a.Spec.Link = ilpv1.AccountLink{HTTP: &ilpv1.HTTPLink{Incoming: httpIn(0)}}
		}, "spec.link.http.incoming.port"},
		{"http url not http(s)", func(_ *ilpv1.Connector, a *ilpv1.Account) {
			a.Spec.Link = ilpv1.AccountLink{HTTP: &ilpv1.HTTPLink{Outgoing: httpOut("btp+ws://bob:7768")}}
		}, "spec.link.http.outgoing.url"},
		{"http url with credentials", func(_ *ilpv1.Connector, a *ilpv1.Account) {
			a.Spec.Link = ilpv1.AccountLink{HTTP: &ilpv1.HTTPLink{Outgoing: httpOut("https://us:token@bob.example/ilp")}}
		}, "spec.link.http.outgoing.url"},
		{"http mode unknown", func(_ *ilpv1.Connector, a *ilpv1.Account) {
			a.Spec.Link = ilpv1.AccountLink{HTTP: &ilpv1.HTTPLink{Mode: "push", Outgoing: httpOut("https://bob.example/ilp")}}
		}, "spec.link.http.mode"},
		{"http async without callback", func(_ *ilpv1.Connector, a *ilpv1.Account) {
			a.Spec.Link = ilpv1.AccountLink{HTTP: &ilpv1.HTTPLink{Mode: ilpv1.HTTPModeAsync, Incoming: httpIn(7769), Outgoing: httpOut("https://bob.example/ilp")}}
		}, "http.mode async needs incoming"},
		{"http async without incoming", func(_ *ilpv1.Connector, a *ilpv1.Account) {
			out := httpOut("https://bob.example/ilp")
			out.CallbackURL = "https://alice.example/cb"
			a.Spec.Link = ilpv1.AccountLink{HTTP: &ilpv1.HTTPLink{Mode: ilpv1.HTTPModeAsync, Outgoing: out}}
		}, "http.mode async needs incoming"},
		{"http callback in sync mode", func(_ *ilpv1.Connector, a *ilpv1.Account) {
			out := httpOut("https://bob.example/ilp")
			out.CallbackURL = "https://alice.example/cb"
			a.Spec.Link = ilpv1.AccountLink{HTTP: &ilpv1.HTTPLink{Incoming: httpIn(7769), Outgoing: out}}
		}, "http.outgoing.callbackURL applies to mode async only"},
		{"http callback not a URL", func(_ *ilpv1.Connector, a *ilpv1.Account) {
			out := httpOut("https://bob.example/ilp")
			out.CallbackURL = "alice:7769"
			a.Spec.Link = ilpv1.AccountLink{HTTP: &ilpv1.HTTPLink{Mode: ilpv1.HTTPModeAsync, Incoming: httpIn(7769), Outgoing: out}}
		}, "spec.link.http.outgoing.callbackURL"},
		{"segment on a peer", func(_ *ilpv1.Connector, a *ilpv1.Account) { a.Spec.ILPAddressSegment = "x" }, "ilpAddressSegment applies to child accounts only"},
		{"bad relation", func(_ *ilpv1.Connector, a *ilpv1.Account) { a.Spec.Relation = "friend" }, "spec.relation"},
		// What follows the runtime refuses (kube.Build, config.Validate): admission must too,
		// so that a bad commit fails at dry-run instead of in the pods.
		{"g. address without network (unset is test)", func(c *ilpv1.Connector, _ *ilpv1.Account) {
			c.Spec.ILPAddress, c.Spec.Network = "g.acme", ""
		}, "network unset or test"},
		{"static rate 0", func(c *ilpv1.Connector, _ *ilpv1.Account) { c.Spec.Rates.Rates["EUR"] = "0" }, "spec.rates.rates.EUR"},
		{"static rate 0.000", func(c *ilpv1.Connector, _ *ilpv1.Account) { c.Spec.Rates.Rates["EUR"] = "0.000" }, "spec.rates.rates.EUR"},
		{"spread 1", func(c *ilpv1.Connector, _ *ilpv1.Account) { c.Spec.Rates.Spread = "1" }, "spec.rates.spread"},
		{"maxPacketAmount above uint64", func(_ *ilpv1.Connector, a *ilpv1.Account) {
			a.Spec.MaxPacketAmount = ptr.To(ilpv1.AmountString("18446744073709551616"))
		}, "spec.maxPacketAmount: Invalid value"},
		{"maxPacketAmount of 20 nines", func(_ *ilpv1.Connector, a *ilpv1.Account) {
			a.Spec.MaxPacketAmount = ptr.To(ilpv1.AmountString("99999999999999999999"))
		}, "(uint64)"},
		{"maxPacketAmount 0", func(_ *ilpv1.Connector, a *ilpv1.Account) { a.Spec.MaxPacketAmount = ptr.To(ilpv1.AmountString("0")) }, "spec.maxPacketAmount"},
		{"throughput amount 0", func(_ *ilpv1.Connector, a *ilpv1.Account) {
			a.Spec.Throughput = &ilpv1.ThroughputSpec{IncomingAmount: ptr.To(ilpv1.AmountString("0"))}
		}, "spec.throughput.incomingAmount"},
		{"balance.maximum above int64", func(_ *ilpv1.Connector, a *ilpv1.Account) {
			a.Spec.Balance.Maximum = ptr.To(ilpv1.IntegerString("9999999999999999999"))
		}, "(int64)"},
		{"balance.minimum below int64", func(_ *ilpv1.Connector, a *ilpv1.Account) {
			a.Spec.Balance.Minimum = ptr.To(ilpv1.IntegerString("-9223372036854775809"))
		}, "(int64)"},
		{"Connector name with a dot", func(c *ilpv1.Connector, _ *ilpv1.Account) { c.Name = "acme.eu" }, "DNS-1035 label"},
		{"Connector name starting with a digit", func(c *ilpv1.Connector, _ *ilpv1.Account) { c.Name = "1acme" }, "DNS-1035 label"},
		{"Connector name of 53 characters", func(c *ilpv1.Connector, _ *ilpv1.Account) { c.Name = "c" + strings.Repeat("x", 52) }, "at most 52 characters"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, a := sampleConnector(ns), sampleAccount(ns, "acct", "alice")
			c.Name, a.Name = fmt.Sprintf("c%d", i), fmt.Sprintf("a%d", i)
			tc.mutate(c, a)
			errC := k8s.Create(context.Background(), c)
			errA := k8s.Create(context.Background(), a)
			err := errC
			if err == nil {
				err = errA
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("create: got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestAdmissionAccepts checks that the bounds of the rules above admit what the runtime takes:
// the extreme amounts, a small positive rate, a zero spread and the longest names.
func TestAdmissionAccepts(t *testing.T) {
	ns := namespace(t)
	cases := []struct {
		name   string
		mutate func(c *ilpv1.Connector, a *ilpv1.Account)
	}{
		{"int64 and uint64 bounds", func(_ *ilpv1.Connector, a *ilpv1.Account) {
			a.Spec.Balance.Minimum = ptr.To(ilpv1.IntegerString("-9223372036854775808"))
			a.Spec.Balance.Maximum = ptr.To(ilpv1.IntegerString("9223372036854775807"))
			a.Spec.MaxPacketAmount = ptr.To(ilpv1.AmountString("18446744073709551615"))
			a.Spec.Throughput = &ilpv1.ThroughputSpec{OutgoingAmount: ptr.To(ilpv1.AmountString("1"))}
		}},
		{"short numbers", func(_ *ilpv1.Connector, a *ilpv1.Account) {
			a.Spec.Balance.Minimum = ptr.To(ilpv1.IntegerString("-0"))
			a.Spec.Balance.Maximum = ptr.To(ilpv1.IntegerString("0"))
			a.Spec.MaxPacketAmount = ptr.To(ilpv1.AmountString("9999999999999999999"))
		}},
		{"small rate, zero spread", func(c *ilpv1.Connector, _ *ilpv1.Account) {
			c.Spec.Rates.Rates["EUR"], c.Spec.Rates.Spread = "0.000001", "0.0"
		}},
		{"production g. address", func(c *ilpv1.Connector, _ *ilpv1.Account) {
			c.Spec.ILPAddress, c.Spec.Network = "g.acme", "production"
		}},
		{"test address without network", func(c *ilpv1.Connector, _ *ilpv1.Account) { c.Spec.Network = "" }},
		{"Connector name of 52 characters", func(c *ilpv1.Connector, _ *ilpv1.Account) { c.Name = "c" + strings.Repeat("x-", 25) + "z" }},
		{"http sync, both directions", func(_ *ilpv1.Connector, a *ilpv1.Account) {
			a.Spec.Link = ilpv1.AccountLink{HTTP: &ilpv1.HTTPLink{Incoming: httpIn(7769), Outgoing: httpOut("http://bob:7768/accounts/alice/ilp?x=1")}}
		}},
		{"http async", func(_ *ilpv1.Connector, a *ilpv1.Account) {
			out := httpOut("https://bob.example:8443/ilp")
			out.CallbackURL = "http://alice.ns.svc:7769/ilp/callback"
			a.Spec.Link = ilpv1.AccountLink{HTTP: &ilpv1.HTTPLink{Mode: ilpv1.HTTPModeAsync, Incoming: httpIn(7769), Outgoing: out}}
		}},
		{"http incoming only, JWT", func(_ *ilpv1.Connector, a *ilpv1.Account) {
			a.Spec.Link = ilpv1.AccountLink{HTTP: &ilpv1.HTTPLink{Incoming: &ilpv1.HTTPIncoming{Port: 65535, JWTSecretRef: &ilpv1.SecretKeyRef{Name: "bob", Key: "jwt"}}}}
		}},
		{"http outgoing only, sync written out", func(_ *ilpv1.Connector, a *ilpv1.Account) {
			a.Spec.Link = ilpv1.AccountLink{HTTP: &ilpv1.HTTPLink{Mode: ilpv1.HTTPModeSync, Outgoing: httpOut("https://bob.example")}}
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, a := sampleConnector(ns), sampleAccount(ns, "acct", "alice")
			c.Name, a.Name = fmt.Sprintf("ok%d", i), fmt.Sprintf("ok%d", i)
			tc.mutate(c, a)
			for _, o := range []client.Object{c, a} {
				if err := k8s.Create(context.Background(), o, client.DryRunAll); err != nil {
					t.Errorf("create %T %s: %v", o, o.GetName(), err)
				}
			}
		})
	}
}

// TestSettlementEngineNames checks the name rules of SettlementEngine: its Service is
// <name>-engine, a DNS-1035 label.
func TestSettlementEngineNames(t *testing.T) {
	ns := namespace(t)
	cases := []struct {
		name string
		want string // "" when admitted
	}{
		{"xrp.eu", "DNS-1035 label"},
		{"e" + strings.Repeat("x", 56), "at most 56 characters"},
		{"e" + strings.Repeat("x", 55), ""},
	}
	for _, tc := range cases {
		eng := &ilpv1.SettlementEngine{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: tc.name},
			Spec: ilpv1.SettlementEngineSpec{AssetCode: "XRP", AssetScale: 6, Image: "example/xrp-engine:1", Port: 3000}}
		err := k8s.Create(context.Background(), eng, client.DryRunAll)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("create SettlementEngine %q: got %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestImmutableFields checks the transition rules; want "" marks an update that must pass.
func TestImmutableFields(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	c, a := sampleConnector(ns), sampleAccount(ns, "bob", "alice")
	// Two file-store Connectors: one without store.file, one with a size and a class.
	bare, sized := sampleConnector(ns), sampleConnector(ns)
	bare.Name, bare.Spec.Store = "bare", &ilpv1.StoreSpec{Type: ilpv1.StoreFile}
	sized.Name, sized.Spec.Store = "sized", &ilpv1.StoreSpec{Type: ilpv1.StoreFile,
		File: &ilpv1.FileStoreSpec{Size: ptr.To(resource.MustParse("2Gi")), StorageClassName: ptr.To("standard")}}
	for _, o := range []client.Object{c, a, bare, sized} {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	store := func(o client.Object) *ilpv1.StoreSpec { return o.(*ilpv1.Connector).Spec.Store }
	cases := []struct {
		name   string
		obj    client.Object
		mutate func(client.Object)
		want   string
	}{
		{"ilpAddress", c, func(o client.Object) { o.(*ilpv1.Connector).Spec.ILPAddress = "test.alice2" }, "ilpAddress is immutable"},
		{"connectorRef", a, func(o client.Object) { o.(*ilpv1.Account).Spec.ConnectorRef = "other" }, "connectorRef is immutable"},
		{"add store.file.size", bare, func(o client.Object) {
			store(o).File = &ilpv1.FileStoreSpec{Size: ptr.To(resource.MustParse("5Gi"))}
		}, "expand the PersistentVolumeClaim"},
		{"add store.file.storageClassName", bare, func(o client.Object) {
			store(o).File = &ilpv1.FileStoreSpec{StorageClassName: ptr.To("fast")}
		}, "its storageClassName is fixed"},
		{"change store.file.size", sized, func(o client.Object) { store(o).File.Size = ptr.To(resource.MustParse("5Gi")) }, "its size is fixed"},
		{"remove store.file.size", sized, func(o client.Object) { store(o).File.Size = nil }, "its size is fixed"},
		{"remove store.file", sized, func(o client.Object) { store(o).File = nil }, "its size is fixed"},
		{"other field of a file-store Connector", sized, func(o client.Object) {
			o.(*ilpv1.Connector).Spec.Logging = &ilpv1.LoggingSpec{Level: "debug"}
		}, ""},
		{"file store to memory", bare, func(o client.Object) { store(o).Type = ilpv1.StoreMemory }, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tryUpdate(tc.obj, tc.mutate)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("%T update: got %v, want %q", tc.obj, err, tc.want)
			}
		})
	}
}

// TestReferenceConditions follows an Account and a Route from a missing Connector to a resolved one.
func TestReferenceConditions(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	acct := sampleAccount(ns, "bob", "alice")
	route := &ilpv1.Route{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "r"},
		Spec: ilpv1.RouteSpec{ConnectorRef: "alice", TargetPrefix: "test.bob", NextHop: "bob"}}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bob"}, StringData: map[string]string{"secret": "s3cret"}}
	for _, o := range []client.Object{secret, acct, route} {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	waitReady(t, acct, metav1.ConditionFalse, "ConnectorNotFound")
	waitReady(t, route, metav1.ConditionFalse, "ConnectorNotFound")

	if err := k8s.Create(ctx, sampleConnector(ns)); err != nil {
		t.Fatal(err)
	}
	waitReady(t, acct, metav1.ConditionTrue, "Resolved")
	waitReady(t, route, metav1.ConditionTrue, "Resolved")

	conn := &ilpv1.Connector{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "alice"}}
	waitReady(t, conn, metav1.ConditionFalse, "WorkloadUnavailable")
	eventually(t, func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(conn), conn); err != nil {
			return err
		}
		if conn.Status.Accounts != 1 || conn.Status.Address != "test.alice" {
			return fmt.Errorf("status %+v", conn.Status)
		}
		return nil
	})
}

// waitReady waits until obj's Ready condition has the status and reason, at its generation.
func waitReady(t *testing.T, obj client.Object, status metav1.ConditionStatus, reason string) {
	t.Helper()
	eventually(t, func() error {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		conds := statusConditions(obj)
		c := meta.FindStatusCondition(conds, ilpv1.ConditionReady)
		if c == nil || c.Status != status || c.Reason != reason || c.ObservedGeneration != obj.GetGeneration() {
			return fmt.Errorf("%T %s Ready = %+v, want %s/%s", obj, obj.GetName(), c, status, reason)
		}
		return nil
	})
}
