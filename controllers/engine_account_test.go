package controllers

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
)

func sampleEngine(ns string) *ilpv1.SettlementEngine {
	return &ilpv1.SettlementEngine{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "xrp"},
		Spec: ilpv1.SettlementEngineSpec{AssetCode: "XRP", AssetScale: 6, Image: "example/xrp-engine:1", Port: 3000,
			Args: []string{"--ledger=testnet"},
			Env: []corev1.EnvVar{{Name: "XRP_SECRET", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "xrp"}, Key: "seed"}}}}}}
}

// TestSettlementEngineWorkload checks the engine's Deployment and Service, its URL and status,
// and the Secret its environment reads.
func TestSettlementEngineWorkload(t *testing.T) {
	ns := namespace(t)
	eng := sampleEngine(ns)
	mustCreate(t, eng)
	waitCondition(t, eng, ilpv1.ConditionReferencesResolved, metav1.ConditionFalse, ReasonSecretNotFound)
	waitCondition(t, eng, ilpv1.ConditionReady, metav1.ConditionFalse, ReasonSecretNotFound)
	waitEvent(t, ns, "xrp", ReasonSecretNotFound)

	mustCreate(t, secret(ns, "xrp", map[string]string{"seed": "s"}))
	waitCondition(t, eng, ilpv1.ConditionReady, metav1.ConditionFalse, ReasonWorkloadUnavailable)
	if want := "http://xrp-engine." + ns + ".svc:3000"; eng.Status.URL != want {
		t.Errorf("url = %q, want %q", eng.Status.URL, want)
	}
	dep := get(t, ns, "xrp-engine", &appsv1.Deployment{})
	assertOwned(t, dep, "SettlementEngine", "xrp")
	ctr := dep.Spec.Template.Spec.Containers[0]
	if ctr.Image != "example/xrp-engine:1" || !slices.Equal(ctr.Args, []string{"--ledger=testnet"}) || ctr.Env[0].ValueFrom.SecretKeyRef.Name != "xrp" ||
		ctr.Ports[0].ContainerPort != 3000 || *dep.Spec.Replicas != 1 {
		t.Errorf("engine Deployment = %+v replicas %d", ctr, *dep.Spec.Replicas)
	}
	if dep.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("single engine's strategy %+v; want Recreate: two processes must not share its state during a roll", dep.Spec.Strategy)
	}
	if p := ctr.ReadinessProbe; p == nil || p.TCPSocket == nil || p.TCPSocket.Port.String() != "http" {
		t.Errorf("engine readiness probe %+v: want a TCP check of the engine's port", p)
	}
	svc := get(t, ns, "xrp-engine", &corev1.Service{})
	assertOwned(t, svc, "SettlementEngine", "xrp")
	if p := svc.Spec.Ports[0]; p.Port != 3000 || p.TargetPort != intstr.FromString("http") || svc.Spec.Selector[ilpv1.LabelSettlementEngine] != "xrp" {
		t.Errorf("engine Service = %+v", svc.Spec)
	}

	dep.Status = appsv1.DeploymentStatus{ObservedGeneration: dep.Generation, Replicas: 1, UpdatedReplicas: 1, ReadyReplicas: 1, AvailableReplicas: 1}
	if err := k8s.Status().Update(context.Background(), dep); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, eng, ilpv1.ConditionReady, metav1.ConditionTrue, ReasonAvailable)

	update(t, eng, func(e *ilpv1.SettlementEngine) { e.Spec.Replicas = ptr.To(int32(2)) })
	eventually(t, func() error {
		d := get(t, ns, "xrp-engine", &appsv1.Deployment{})
		return checkf(*d.Spec.Replicas == 2 && d.Spec.Strategy.Type == appsv1.RollingUpdateDeploymentStrategyType, "replicas or strategy (RollingUpdate with several) not updated")
	})
	// Active/standby replicas (one holds the store's lease) must not roll: spec.strategy says
	// so whatever the count, either way.
	for _, s := range []struct {
		strategy ilpv1.EngineStrategy
		replicas int32
		want     appsv1.DeploymentStrategyType
	}{
		{ilpv1.EngineStrategyRecreate, 2, appsv1.RecreateDeploymentStrategyType},
		{ilpv1.EngineStrategyRollingUpdate, 1, appsv1.RollingUpdateDeploymentStrategyType},
		{"", 1, appsv1.RecreateDeploymentStrategyType},
	} {
		update(t, eng, func(e *ilpv1.SettlementEngine) { e.Spec.Strategy, e.Spec.Replicas = s.strategy, ptr.To(s.replicas) })
		eventually(t, func() error {
			d := get(t, ns, "xrp-engine", &appsv1.Deployment{})
			return checkf(d.Spec.Strategy.Type == s.want && (s.want == appsv1.RollingUpdateDeploymentStrategyType) == (d.Spec.Strategy.RollingUpdate != nil),
				fmt.Sprintf("strategy %q with %d replicas: Deployment strategy %+v, want %s", s.strategy, s.replicas, d.Spec.Strategy, s.want))
		})
	}
	// metricsPort is declared as the container port "metrics", for a PodMonitor to name; it
	// must not be the API's port.
	update(t, eng, func(e *ilpv1.SettlementEngine) { e.Spec.MetricsPort = ptr.To(int32(9100)) })
	eventually(t, func() error {
		ports := get(t, ns, "xrp-engine", &appsv1.Deployment{}).Spec.Template.Spec.Containers[0].Ports
		want := []corev1.ContainerPort{{Name: "http", ContainerPort: 3000, Protocol: corev1.ProtocolTCP}, {Name: "metrics", ContainerPort: 9100, Protocol: corev1.ProtocolTCP}}
		return checkf(reflect.DeepEqual(ports, want), fmt.Sprintf("container ports %+v, want %+v", ports, want))
	})
	err := tryUpdate(eng, func(o client.Object) { o.(*ilpv1.SettlementEngine).Spec.MetricsPort = ptr.To(int32(3000)) })
	if err == nil || !strings.Contains(err.Error(), "metricsPort must differ from port") {
		t.Errorf("metricsPort equal to port: %v; want it refused", err)
	}
}

// TestSettlementEngineRolloutProgressing: a new pod template (an image change) is Progressing
// until the Deployment has rolled it out, and not before its controller has even seen it;
// meanwhile the old pods serve and the engine stays Ready.
func TestSettlementEngineRolloutProgressing(t *testing.T) {
	ns := namespace(t)
	eng := sampleEngine(ns)
	mustCreate(t, secret(ns, "xrp", map[string]string{"seed": "s"}), eng)
	waitProgressingStarted(t, eng)
	markEngineRolledOut(t, ns)
	waitCondition(t, eng, ilpv1.ConditionReady, metav1.ConditionTrue, ReasonAvailable)
	waitCondition(t, eng, ilpv1.ConditionProgressing, metav1.ConditionFalse, ReasonRolloutComplete)

	update(t, eng, func(e *ilpv1.SettlementEngine) { e.Spec.Image = "example/xrp-engine:2" })
	eventually(t, func() error {
		d := get(t, ns, "xrp-engine", &appsv1.Deployment{})
		return checkf(d.Spec.Template.Spec.Containers[0].Image == "example/xrp-engine:2", "image not updated")
	})
	waitCondition(t, eng, ilpv1.ConditionProgressing, metav1.ConditionTrue, ReasonRollingOut)
	waitCondition(t, eng, ilpv1.ConditionReady, metav1.ConditionTrue, ReasonAvailable)

	markEngineRolledOut(t, ns)
	waitCondition(t, eng, ilpv1.ConditionProgressing, metav1.ConditionFalse, ReasonRolloutComplete)
}

// markEngineRolledOut plays the Deployment controller: the engine's current template is rolled out.
func markEngineRolledOut(t *testing.T, ns string) {
	t.Helper()
	dep := get(t, ns, "xrp-engine", &appsv1.Deployment{})
	dep.Status = appsv1.DeploymentStatus{ObservedGeneration: dep.Generation, Replicas: 1, UpdatedReplicas: 1, ReadyReplicas: 1, AvailableReplicas: 1}
	if err := k8s.Status().Update(context.Background(), dep); err != nil {
		t.Fatal(err)
	}
}

// TestAccountReferenceErrors follows each reference of an Account that can fail, with the
// condition reason and the Event it produces.
func TestAccountReferenceErrors(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*ilpv1.Account)
		reason string
	}{
		{"connector missing", func(a *ilpv1.Account) { a.Spec.ConnectorRef = "nobody" }, ReasonConnectorNotFound},
		{"secret missing", func(a *ilpv1.Account) { a.Spec.Link.BTPListener.SecretRef.Name = "missing" }, ReasonSecretNotFound},
		{"secret key missing", func(a *ilpv1.Account) { a.Spec.Link.BTPListener.SecretRef.Key = "nokey" }, ReasonSecretKeyNotFound},
		{"client token missing", func(a *ilpv1.Account) {
			a.Spec.Link = ilpv1.AccountLink{BTPClient: &ilpv1.BTPClientLink{URL: "btp+ws://bob:7768", TokenSecretRef: ilpv1.SecretKeyRef{Name: "missing", Key: "token"}}}
		}, ReasonSecretNotFound},
		{"engine missing", func(a *ilpv1.Account) { a.Spec.SettlementEngineRef = "nope" }, ReasonEngineNotFound},
		{"engine of another asset", func(a *ilpv1.Account) { a.Spec.SettlementEngineRef = "xrp" }, ReasonEngineAssetMismatch},
		// sampleConnector has no listeners.settlement: the engine could not report credits.
		{"engine but no settlement listener", func(a *ilpv1.Account) { a.Spec.AssetCode, a.Spec.SettlementEngineRef = "XRP", "xrp" }, ReasonNoSettlementListener},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ns := namespace(t)
			acct := sampleAccount(ns, "bob", "alice")
			tc.mutate(acct)
			mustCreate(t, secret(ns, "bob", map[string]string{"secret": "b"}), secret(ns, "xrp", map[string]string{"seed": "s"}),
				sampleEngine(ns), sampleConnector(ns), acct)
			waitCondition(t, acct, ilpv1.ConditionReferencesResolved, metav1.ConditionFalse, tc.reason)
			waitCondition(t, acct, ilpv1.ConditionReady, metav1.ConditionFalse, tc.reason)
			ev := waitEvent(t, ns, "bob", tc.reason)
			if ev.Type != corev1.EventTypeWarning || ev.Note == "" {
				t.Errorf("event = %+v", ev)
			}
		})
	}
}

// TestAccountResolvesWhenSecretAppears checks that creating the missing Secret (watched by
// metadata) re-checks the Account without any change to it.
func TestAccountResolvesWhenSecretAppears(t *testing.T) {
	ns := namespace(t)
	acct := sampleAccount(ns, "bob", "alice")
	acct.Spec.AssetCode, acct.Spec.SettlementEngineRef = "XRP", "xrp"
	conn := sampleConnector(ns)
	conn.Spec.Listeners = &ilpv1.ListenersSpec{Settlement: &ilpv1.ListenerSpec{Port: 7771}}
	mustCreate(t, conn, sampleEngine(ns), acct)
	waitCondition(t, acct, ilpv1.ConditionReady, metav1.ConditionFalse, ReasonSecretNotFound)
	mustCreate(t, secret(ns, "bob", map[string]string{"secret": "b"}))
	waitCondition(t, acct, ilpv1.ConditionReady, metav1.ConditionTrue, ReasonResolved)
}

// TestAccountResolvesWhenTheSettlementListenerIsAdded: a Connector change re-checks the
// Accounts that name it.
func TestAccountResolvesWhenTheSettlementListenerIsAdded(t *testing.T) {
	ns := namespace(t)
	acct := sampleAccount(ns, "bob", "alice")
	acct.Spec.AssetCode, acct.Spec.SettlementEngineRef = "XRP", "xrp"
	conn := sampleConnector(ns)
	mustCreate(t, conn, sampleEngine(ns), secret(ns, "bob", map[string]string{"secret": "b"}), secret(ns, "xrp", map[string]string{"seed": "s"}), acct)
	waitCondition(t, acct, ilpv1.ConditionReady, metav1.ConditionFalse, ReasonNoSettlementListener)
	patch := client.MergeFrom(conn.DeepCopy())
	conn.Spec.Listeners = &ilpv1.ListenersSpec{Settlement: &ilpv1.ListenerSpec{Port: 7771}}
	if err := k8s.Patch(context.Background(), conn, patch); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, acct, ilpv1.ConditionReady, metav1.ConditionTrue, ReasonResolved)
}

// TestAdmissionRejectsNewFields is the table of CEL and schema rules of the new fields: each
// bad object is refused at admission with the message shown.
func TestAdmissionRejectsNewFields(t *testing.T) {
	ns := namespace(t)
	redis := &ilpv1.StoreSpec{Type: ilpv1.StoreRedis, Redis: &ilpv1.RedisStoreSpec{URLSecretRef: ilpv1.SecretKeyRef{Name: "r", Key: "url"}}}
	cases := []struct {
		name string
		obj  func() client.Object
		want string
	}{
		{"replicas without shared store", func() client.Object {
			c := sampleConnector(ns)
			c.Spec.Replicas = ptr.To(int32(2))
			return c
		}, "replicas > 1 needs a shared store"},
		{"replicas with file store", func() client.Object {
			c := sampleConnector(ns)
			c.Spec.Replicas, c.Spec.Store = ptr.To(int32(2)), &ilpv1.StoreSpec{Type: ilpv1.StoreFile}
			return c
		}, "replicas > 1 needs a shared store"},
		{"redis without its settings", func() client.Object {
			c := sampleConnector(ns)
			c.Spec.Store = &ilpv1.StoreSpec{Type: ilpv1.StoreRedis}
			return c
		}, "store.redis is required when store.type is redis"},
		{"file settings on memory", func() client.Object {
			c := sampleConnector(ns)
			c.Spec.Store = &ilpv1.StoreSpec{Type: ilpv1.StoreMemory, File: &ilpv1.FileStoreSpec{}}
			return c
		}, "store.file applies only when store.type is file"},
		{"unknown store", func() client.Object {
			c := sampleConnector(ns)
			c.Spec.Store = &ilpv1.StoreSpec{Type: "mongo"}
			return c
		}, "spec.store.type"},
		{"duration in words", func() client.Object { return durationHack(sampleConnector(ns)) }, "spec.maxHoldTime"},
		{"bad default route", func() client.Object {
			c := sampleConnector(ns)
			c.Spec.Routing = &ilpv1.RoutingSpec{DefaultRoute: "Not_An_Account"}
			return c
		}, "spec.routing.defaultRoute"},
		{"port clash", func() client.Object {
			c := sampleConnector(ns)
			c.Spec.Listeners = &ilpv1.ListenersSpec{Settlement: &ilpv1.ListenerSpec{Port: 7780}}
			return c
		}, "listeners.settlement and listeners.admin need different ports"},
		{"pdb both bounds", func() client.Object {
			c := sampleConnector(ns)
			c.Spec.Replicas, c.Spec.Store = ptr.To(int32(3)), redis
			one := intstr.FromInt32(1)
			c.Spec.PodDisruptionBudget = &ilpv1.PodDisruptionBudgetSpec{MinAvailable: &one, MaxUnavailable: &one}
			return c
		}, "set minAvailable or maxUnavailable, not both"},
		{"service type", func() client.Object {
			c := sampleConnector(ns)
			c.Spec.Service = &ilpv1.ServiceSpec{Type: "ExternalName"}
			return c
		}, "spec.service.type"},
		{"rate table without the static backend", func() client.Object {
			c := sampleConnector(ns)
			c.Spec.Rates = &ilpv1.RatesSpec{Rates: map[string]ilpv1.DecimalString{"USD": "1"}}
			return c
		}, "rates.rates is the static backend's table"},
		{"ecb settings on another backend", func() client.Object {
			c := sampleConnector(ns)
			c.Spec.Rates = &ilpv1.RatesSpec{Backend: "static", ECB: &ilpv1.ECBRatesSpec{}}
			return c
		}, "rates.ecb applies only when rates.backend is ecb"},
		{"ecb rates stale before a refresh", func() client.Object {
			c := sampleConnector(ns)
			c.Spec.Rates = &ilpv1.RatesSpec{Backend: "ecb", ECB: &ilpv1.ECBRatesSpec{
				RefreshInterval: &metav1.Duration{Duration: 2 * time.Hour}, MaxAge: &metav1.Duration{Duration: time.Hour}}}
			return c
		}, "ecb.maxAge (default 24h) must be longer than ecb.refreshInterval"},
		{"ecb maxAge within the default refresh", func() client.Object {
			c := sampleConnector(ns)
			c.Spec.Rates = &ilpv1.RatesSpec{Backend: "ecb", ECB: &ilpv1.ECBRatesSpec{MaxAge: &metav1.Duration{Duration: 30 * time.Minute}}}
			return c
		}, "ecb.maxAge (default 24h) must be longer than ecb.refreshInterval"},
		{"ecb refresh beyond the default maxAge", func() client.Object {
			c := sampleConnector(ns)
			c.Spec.Rates = &ilpv1.RatesSpec{Backend: "ecb", ECB: &ilpv1.ECBRatesSpec{RefreshInterval: &metav1.Duration{Duration: 48 * time.Hour}}}
			return c
		}, "ecb.maxAge (default 24h) must be longer than ecb.refreshInterval"},
		{"ecb refresh of zero", func() client.Object {
			c := sampleConnector(ns)
			c.Spec.Rates = &ilpv1.RatesSpec{Backend: "ecb", ECB: &ilpv1.ECBRatesSpec{RefreshInterval: &metav1.Duration{}}}
			return c
		}, "must be at least 1ms"},
		{"ecb url not http", func() client.Object {
			c := sampleConnector(ns)
			c.Spec.Rates = &ilpv1.RatesSpec{Backend: "ecb", ECB: &ilpv1.ECBRatesSpec{URL: "file:///etc/passwd"}}
			return c
		}, "spec.rates.ecb.url"},
		{"settle threshold above settleTo", func() client.Object {
			a := sampleAccount(ns, "a", "alice")
			a.Spec.Balance.SettleThreshold = ptr.To(ilpv1.IntegerString("10"))
			return a
		}, "balance.settleThreshold must be <= balance.settleTo"},
		{"throughput amount as a decimal", func() client.Object {
			a := sampleAccount(ns, "a", "alice")
			a.Spec.Throughput = &ilpv1.ThroughputSpec{IncomingAmount: ptr.To(ilpv1.AmountString("1.5"))}
			return a
		}, "spec.throughput.incomingAmount"},
		{"rate limit of zero", func() client.Object {
			a := sampleAccount(ns, "a", "alice")
			a.Spec.RateLimit = &ilpv1.RateLimitSpec{RefillCount: ptr.To(int64(0))}
			return a
		}, "spec.rateLimit.refillCount"},
		{"settleEvery without an engine", func() client.Object {
			a := sampleAccount(ns, "a", "alice")
			a.Spec.SettleEvery = &metav1.Duration{Duration: time.Hour}
			return a
		}, "settleEvery needs settlementEngineRef"},
		{"settleEvery below a second", func() client.Object {
			a := sampleAccount(ns, "a", "alice")
			a.Spec.SettlementEngineRef, a.Spec.SettleEvery = "xrp", &metav1.Duration{Duration: 500 * time.Millisecond}
			return a
		}, "settleEvery must be at least 1s"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.obj()
			o.SetName(strings.ToLower(strings.ReplaceAll(tc.name, " ", "-")) + "-" + string(rune('a'+i)))
			err := k8s.Create(context.Background(), o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("create: got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestAdmissionAcceptsECB: a Connector on the ecb backend with every setting is admitted.
func TestAdmissionAcceptsECB(t *testing.T) {
	c := sampleConnector(namespace(t))
	c.Spec.Rates = &ilpv1.RatesSpec{Backend: "ecb", Spread: "0.002", ECB: &ilpv1.ECBRatesSpec{
		URL:             "https://mirror.example/eurofxref-daily.xml",
		RefreshInterval: &metav1.Duration{Duration: 30 * time.Minute}, MaxAge: &metav1.Duration{Duration: 48 * time.Hour}}}
	if err := k8s.Create(context.Background(), c); err != nil {
		t.Fatalf("create: %v", err)
	}
}

// durationHack writes a Connector whose maxHoldTime is not a Go duration: metav1.Duration
// cannot hold one, so the object goes through unstructured.
func durationHack(c *ilpv1.Connector) client.Object {
	u, err := toUnstructured(c)
	if err != nil {
		panic(err)
	}
	_ = setNested(u.Object, "30 seconds", "spec", "maxHoldTime")
	return u
}

// TestImmutableNewFields checks the transition rules of the new fields.
func TestImmutableNewFields(t *testing.T) {
	ns := namespace(t)
	conn := sampleConnector(ns)
	conn.Spec.Store = &ilpv1.StoreSpec{Type: ilpv1.StoreFile, File: &ilpv1.FileStoreSpec{}}
	eng := sampleEngine(ns)
	mustCreate(t, conn, eng)
	err := tryUpdate(conn, func(o client.Object) { o.(*ilpv1.Connector).Spec.Store.File.StorageClassName = ptr.To("fast") })
	if err == nil || !strings.Contains(err.Error(), "store.file is immutable") {
		t.Errorf("store.file update: %v", err)
	}
	err = tryUpdate(eng, func(o client.Object) { o.(*ilpv1.SettlementEngine).Spec.AssetCode = "ETH" })
	if err == nil || !strings.Contains(err.Error(), "assetCode and assetScale are immutable") {
		t.Errorf("engine asset update: %v", err)
	}
}

func checkf(ok bool, msg string) error {
	if ok {
		return nil
	}
	return errString(msg)
}

type errString string

func (e errString) Error() string { return string(e) }

// TestEnginePodTemplateLowPort: an engine on a port below 1024 gets the sysctl that lets its
// capability-less container bind it; any other engine's template stays without a pod security
// context, as before.
func TestEnginePodTemplateLowPort(t *testing.T) {
	for _, tc := range []struct {
		port int32
		want []corev1.Sysctl
	}{
		{3000, nil},
		{1024, nil},
		{1023, []corev1.Sysctl{{Name: "net.ipv4.ip_unprivileged_port_start", Value: "1023"}}},
		{80, []corev1.Sysctl{{Name: "net.ipv4.ip_unprivileged_port_start", Value: "80"}}},
	} {
		eng := sampleEngine("ns")
		eng.Spec.Port = tc.port
		sc := enginePodTemplate(eng).Spec.SecurityContext
		switch {
		case tc.want == nil && sc != nil:
			t.Errorf("port %d: security context %+v, want none", tc.port, sc)
		case tc.want != nil && (sc == nil || !slices.Equal(sc.Sysctls, tc.want)):
			t.Errorf("port %d: security context %+v, want sysctls %v", tc.port, sc, tc.want)
		}
	}
}

// TestSettlementEngineLowPortAdmitted: the API server takes the engine's Deployment with the
// sysctl.
func TestSettlementEngineLowPortAdmitted(t *testing.T) {
	ns := namespace(t)
	eng := sampleEngine(ns)
	eng.Spec.Port = 80
	mustCreate(t, secret(ns, "xrp", map[string]string{"seed": "s"}), eng)
	dep := get(t, ns, "xrp-engine", &appsv1.Deployment{})
	if sc := dep.Spec.Template.Spec.SecurityContext; sc == nil || len(sc.Sysctls) != 1 || sc.Sysctls[0].Value != "80" {
		t.Errorf("engine pod security context %+v, want the unprivileged port start at 80", sc)
	}
}

// TestSettlementEngineUnavailableSaysWhy: an engine whose pods cannot come up (an image that
// cannot be pulled) says why in WorkloadUnavailable, as a Connector does.
func TestSettlementEngineUnavailableSaysWhy(t *testing.T) {
	ns := namespace(t)
	eng := sampleEngine(ns)
	mustCreate(t, secret(ns, "xrp", map[string]string{"seed": "s"}), eng)
	get(t, ns, "xrp-engine", &appsv1.Deployment{})
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "xrp-engine-1", Labels: engineLabels(eng)},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "engine", Image: "example/xrp-engine:1"}}}}
	mustCreate(t, p)
	p.Status = corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{Name: "engine", Image: "example/xrp-engine:1",
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: "not found"}}}}}
	if err := k8s.Status().Update(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		c := meta.FindStatusCondition(get(t, ns, "xrp", eng).Status.Conditions, ilpv1.ConditionReady)
		if c == nil || c.Reason != ReasonWorkloadUnavailable || !strings.Contains(c.Message, "container engine is waiting: ErrImagePull: not found") {
			return fmt.Errorf("Ready = %+v, want WorkloadUnavailable saying why", c)
		}
		return nil
	})
}

// TestSettlementEngineStandbyReady: an engine of several replicas is Ready with one pod
// available, as docs/user-guide.md's active/standby engine is (one replica settles, the others
// stand by, never ready), and not Ready with none.
func TestSettlementEngineStandbyReady(t *testing.T) {
	ns := namespace(t)
	eng := sampleEngine(ns)
	eng.Spec.Replicas = ptr.To(int32(2))
	eng.Spec.Strategy = "Recreate"
	mustCreate(t, secret(ns, "xrp", map[string]string{"seed": "s"}), eng)
	var dep *appsv1.Deployment
	eventually(t, func() error {
		dep = get(t, ns, "xrp-engine", &appsv1.Deployment{})
		return checkf(*dep.Spec.Replicas == 2, "replicas not 2")
	})
	for _, tc := range []struct {
		available int32
		status    metav1.ConditionStatus
		reason    string
	}{
		{1, metav1.ConditionTrue, ReasonAvailable},
		{0, metav1.ConditionFalse, ReasonWorkloadUnavailable},
	} {
		eventually(t, func() error { // again after a conflict with the operator's own write
			dep = get(t, ns, "xrp-engine", &appsv1.Deployment{})
			dep.Status = appsv1.DeploymentStatus{ObservedGeneration: dep.Generation, Replicas: 2, UpdatedReplicas: 2,
				ReadyReplicas: tc.available, AvailableReplicas: tc.available, UnavailableReplicas: 2 - tc.available}
			return k8s.Status().Update(context.Background(), dep)
		})
		c := waitCondition(t, eng, ilpv1.ConditionReady, tc.status, tc.reason)
		if want := fmt.Sprintf("has %d of 2 pods available", tc.available); !strings.Contains(c.Message, want) {
			t.Errorf("%d available: Ready message %q, want it to say %q", tc.available, c.Message, want)
		}
	}
}
