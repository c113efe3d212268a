package controllers

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func TestRestartInputsChangedSince(t *testing.T) {
	plain := sampleConnector("ns")
	logged := sampleConnector("ns")
	logged.Spec.Logging = &ilpv1.LoggingSpec{Level: "debug"}
	json := sampleConnector("ns")
	json.Spec.Logging = &ilpv1.LoggingSpec{Level: "debug", Format: "json"}
	onRedis := sampleConnector("ns")
	onRedis.Spec.Store = &ilpv1.StoreSpec{Type: ilpv1.StoreRedis, Redis: &ilpv1.RedisStoreSpec{URLSecretRef: ilpv1.SecretKeyRef{Name: "redis", Key: "url"}}}
	inheriting := sampleConnector("ns")
	inheriting.Spec.ILPAddress, inheriting.Spec.InheritAddressFrom = "", "up"
	inheritingElsewhere := inheriting.DeepCopy()
	inheritingElsewhere.Spec.InheritAddressFrom = "other"
	inheritingLive := inheriting.DeepCopy()
	inheritingLive.Spec.Network = "production"
	holdLonger := sampleConnector("ns")
	holdLonger.Spec.MaxHoldTime = &metav1.Duration{Duration: 30 * time.Second}
	holdLongest := sampleConnector("ns")
	holdLongest.Spec.MaxHoldTime = &metav1.Duration{Duration: 2 * time.Minute}
	for _, tt := range []struct {
		name                 string
		from, to             *ilpv1.Connector
		fromImage            string
		fromSecret, toSecret string
		want                 []string
	}{
		{"nothing", plain, plain, "img", "", "", nil},
		{"image", plain, plain, "other", "", "", []string{"image"}},
		{"logging set", plain, logged, "img", "", "", []string{"logging"}},
		{"logging changed", logged, json, "img", "", "", []string{"logging"}},
		{"logging unset", json, plain, "img", "", "", []string{"logging"}},
		{"store Secret rotated", plain, plain, "img", "41", "42", []string{"storeSecret"}},
		{"store Secret the same", plain, plain, "img", "41", "41", nil},
		{"a Redis store comes with its Secret", plain, onRedis, "img", "", "41", []string{"store"}},
		{"the Redis store goes with its Secret", onRedis, plain, "img", "41", "", []string{"store"}},
		{"an inherited address from another parent", inheriting, inheritingElsewhere, "img", "", "", []string{"inheritedAddress"}},
		{"an inherited address on another network", inheriting, inheritingLive, "img", "", "", []string{"inheritedAddress"}},
		{"a max hold time within the grace period", plain, holdLonger, "img", "", "", nil},
		{"a max hold time past the grace period", plain, holdLongest, "img", "", "", []string{"gracePeriod"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			prev := restartInputsOf(tt.from, tt.fromImage, tt.fromSecret, 0).String() + ",foo-bar=1,=2" // keys not ours are ignored
			if got := restartInputsOf(tt.to, "img", tt.toSecret, 0).changedSince(prev); !slices.Equal(got, tt.want) {
				t.Errorf("changed = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestConnectorArgs(t *testing.T) {
	c := sampleConnector("ns")
	base := []string{"connector", "--source=kubernetes", "--connector=alice"}
	if got := connectorArgs(c); !slices.Equal(got, base) {
		t.Errorf("args = %q, want %q", got, base)
	}
	c.Spec.Logging = &ilpv1.LoggingSpec{Level: "warn", Format: "json"}
	if got, want := connectorArgs(c), append(base, "--log-level=warn", "--log-format=json"); !slices.Equal(got, want) {
		t.Errorf("args = %q, want %q", got, want)
	}
	c.Spec.Logging = &ilpv1.LoggingSpec{}
	if got := connectorArgs(c); !slices.Equal(got, base) {
		t.Errorf("empty logging: args = %q, want %q", got, base)
	}
}

// TestGracePeriodCoversTheDrain: a stopping pod drains packets for up to the max hold time,
// then closes its links and store; the kubelet must not kill it before.
func TestGracePeriodCoversTheDrain(t *testing.T) {
	for _, tt := range []struct {
		hold *metav1.Duration
		want int64
	}{
		{nil, 45},
		{&metav1.Duration{Duration: 10 * time.Second}, 45},
		{&metav1.Duration{Duration: 30 * time.Second}, 45},
		{&metav1.Duration{Duration: 2 * time.Minute}, 135},
		{&metav1.Duration{Duration: 2*time.Minute + 100*time.Millisecond}, 136},
	} {
		c := sampleConnector("ns")
		c.Spec.MaxHoldTime = tt.hold
		if got := *connectorPodTemplate(c, "img", restartInputsOf(c, "img", "", 0), 0).Spec.TerminationGracePeriodSeconds; got != tt.want {
			t.Errorf("maxHoldTime %v: grace period %d s, want %d", tt.hold, got, tt.want)
		}
	}
}

// TestProgressingKeepsTheWorkloadsReason: a roll whose reason the status lost (its write
// failed) is reported with the reason the workload keeps, not the previous roll's.
func TestProgressingKeepsTheWorkloadsReason(t *testing.T) {
	conn := sampleConnector("ns")
	setCondition(conn, &conn.Status.BaseStatus, ilpv1.ConditionProgressing, true, "StoreChanged", "pods roll because store changed")
	setProgressing(conn, &conn.Status.BaseStatus, &workloadState{kind: "Deployment", name: "alice",
		rollout: rolloutNote{Reason: "StoreSecretChanged", Message: "pods roll because storeSecret changed"}})
	c := meta.FindStatusCondition(conn.Status.Conditions, ilpv1.ConditionProgressing)
	if c == nil || c.Status != metav1.ConditionTrue || c.Reason != "StoreSecretChanged" {
		t.Errorf("Progressing = %+v, want True/StoreSecretChanged", c)
	}
	setProgressing(conn, &conn.Status.BaseStatus, &workloadState{kind: "Deployment", name: "alice", rolledOut: true,
		rollout: rolloutNote{Reason: "StoreSecretChanged"}})
	if c := meta.FindStatusCondition(conn.Status.Conditions, ilpv1.ConditionProgressing); c.Status != metav1.ConditionFalse {
		t.Errorf("after the roll: %+v, want False", c)
	}
}

// TestConnectorRulesNameTheAccounts: the pods may write the status of their own Accounts and
// Routes only; without Accounts (or Routes) there is no such rule at all, since a rule without
// resourceNames would grant every object of the kind in the namespace.
func TestConnectorRulesNameTheAccounts(t *testing.T) {
	conn := sampleConnector("ns")
	cases := []struct {
		name             string
		accounts, routes []string
	}{
		{"no accounts, no routes", nil, nil},
		{"two accounts, no routes", []string{"bob", "carol"}, nil},
		{"no accounts, a route", nil, []string{"r"}},
		{"two accounts, two routes", []string{"bob", "carol"}, []string{"r", "r2"}},
	}
	for _, tc := range cases {
		rules := connectorRules(conn, tc.accounts, tc.routes, nil)
		for _, want := range []struct {
			resource string
			names    []string
		}{{"accounts/status", tc.accounts}, {"routes/status", tc.routes}} {
			var got []string
			found := false
			for _, r := range rules {
				if slices.Contains(r.Resources, want.resource) {
					found, got = true, r.ResourceNames
				}
			}
			if found != (want.names != nil) || !slices.Equal(got, want.names) {
				t.Errorf("%s: %s rule present %t, names %v; want names %v", tc.name, want.resource, found, got, want.names)
			}
		}
	}
}

// TestUpgradeDoesNotRollInheritingConnectors: a pod template written before the operator
// tracked the inherited address (no inheritedAddress restart input) is kept as it is by a
// reconcile that changes nothing, so an operator upgrade rolls no pod; a later change of the
// network still rolls them, named.
func TestUpgradeDoesNotRollInheritingConnectors(t *testing.T) {
	ns := namespace(t)
	c := createInheriting(t, ns)

	var dep appsv1.Deployment
	key := client.ObjectKey{Namespace: ns, Name: "alice"}
	eventually(t, func() error { return k8s.Get(context.Background(), key, &dep) })
	var parts []string
	for kv := range strings.SplitSeq(dep.Spec.Template.Annotations[ilpv1.AnnotationRestartInputs], ",") {
		if !strings.HasPrefix(kv, "inheritedAddress=") {
			parts = append(parts, kv)
		}
	}
	before := strings.Join(parts, ",")
	// The Deployment as an operator of before left it.
	update(t, &dep, func(d *appsv1.Deployment) {
		d.Spec.Template.Annotations[ilpv1.AnnotationRestartInputs] = before
		delete(d.Annotations, annotationTemplateHash)
		delete(d.Annotations, ilpv1.AnnotationRolloutReason)
	})
	update(t, c, func(c *ilpv1.Connector) { c.Labels = map[string]string{"poke": "1"} }) // a reconcile
	eventually(t, func() error {
		if err := k8s.Get(context.Background(), key, &dep); err != nil {
			return err
		}
		if dep.Annotations[annotationAddressBaseline] == "" {
			return errors.New("no baseline recorded yet")
		}
		return nil
	})
	if got := dep.Spec.Template.Annotations[ilpv1.AnnotationRestartInputs]; got != before {
		t.Errorf("a reconcile after the upgrade rewrote the restart inputs (the pods roll):\n before %s\n after  %s", before, got)
	}

	update(t, c, func(c *ilpv1.Connector) { c.Spec.Network = "production" })
	eventually(t, func() error {
		if err := k8s.Get(context.Background(), key, &dep); err != nil {
			return err
		}
		if !strings.Contains(dep.Spec.Template.Annotations[ilpv1.AnnotationRestartInputs], "inheritedAddress=") {
			return errors.New("the network change did not roll the pods")
		}
		return nil
	})
	waitCondition(t, c, ilpv1.ConditionProgressing, metav1.ConditionTrue, "InheritedAddressChanged")
}
