package controllers

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/runtime/config"
)

// restartInputs are the parts of a Connector that the runtime cannot hot-reload, each reduced
// to a short hash. Their rendering is the pod-template annotation ilp.ilpfleet.dev/restart-inputs:
// a change of any of them rolls the pods, and comparing the parts names why.
type restartInputs struct {
	parts [][2]string // name, hash, in a fixed order
}

// optionalInputs are the restart inputs a Connector has only when it sets them.
var optionalInputs = []string{"logging", "storeSecret", "inheritedAddress", "gracePeriod", "lowPort"}

// restartInputsOf hashes image, resources, store, scheduling, listeners and logging of c, the
// version of the Secret holding the Redis URL (storeSecret, "" without one), where an
// inherited address comes from (the runtime takes its network and parent only at start), and
// the pods' termination grace period when the max hold time lengthens it, and the lowest port
// below 1024 the pods bind (lowPort, 0 without one: unprivilegedPortStart).
func restartInputsOf(c *ilpv1.Connector, image, storeSecret string, lowPort int32) restartInputs {
	s := c.Spec
	in := restartInputs{parts: [][2]string{
		{"image", shortHash(image)},
		{"resources", shortHash(s.Resources)},
		{"store", shortHash(effectiveStore(c))},
		{"scheduling", shortHash([]any{s.NodeSelector, s.Tolerations, s.Affinity, s.TopologySpreadConstraints})},
		{"listeners", shortHash(connectorPorts(c))},
	}}
	// Only when set, so that Connectors without it keep the annotation they had and do not
	// roll when the operator is upgraded.
	if args := connectorArgs(c)[3:]; len(args) > 0 {
		in.parts = append(in.parts, [2]string{"logging", shortHash(args)})
	}
	if storeSecret != "" {
		in.parts = append(in.parts, [2]string{"storeSecret", shortHash(storeSecret)})
	}
	// An ilpAddress is immutable, and with it the network (RFC 34 ties one to the other).
	if s.InheritAddressFrom != "" {
		in.parts = append(in.parts, [2]string{"inheritedAddress", shortHash([]string{s.Network, s.InheritAddressFrom})})
	}
	if g := gracePeriod(c); g != minGracePeriod {
		in.parts = append(in.parts, [2]string{"gracePeriod", shortHash(g)})
	}
	// The pod sysctl that lets the non-root process bind it: only with a port below 1024, so
	// that the pods of every other Connector keep their template through the operator upgrade
	// that brought it.
	if lowPort > 0 {
		in.parts = append(in.parts, [2]string{"lowPort", shortHash(lowPort)})
	}
	return in
}

// minGracePeriod is the pods' termination grace period in seconds with the default max hold
// time (config.DefaultMaxHoldTime) or a shorter one.
const minGracePeriod = 45

// gracePeriod is how long a stopping pod may run, in seconds: the max hold time plus 15 s, at
// least minGracePeriod. The process bounds its own shutdown at the max hold time plus 5 s
// (connector_cmd.go's closeConnector gives Close that long: the drain of the packets in
// flight, up to the max hold time, then the links, the settlement engines' API and the
// store); the other 10 s are a margin before the kubelet kills it.
func gracePeriod(c *ilpv1.Connector) int64 {
	hold := config.DefaultMaxHoldTime
	if c.Spec.MaxHoldTime != nil {
		hold = c.Spec.MaxHoldTime.Duration
	}
	return max(minGracePeriod, int64(math.Ceil((hold + 15*time.Second).Seconds())))
}

// effectiveStore is the store with its default spelled out, so that writing the default
// explicitly (store: {type: memory}) is not a change.
func effectiveStore(c *ilpv1.Connector) *ilpv1.StoreSpec {
	if c.Spec.Store == nil {
		return &ilpv1.StoreSpec{Type: ilpv1.StoreMemory}
	}
	return c.Spec.Store
}

// String renders the inputs as name=hash pairs, e.g. image=1a2b3c4d,resources=….
func (r restartInputs) String() string {
	var b strings.Builder
	for i, p := range r.parts {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(p[0] + "=" + p[1])
	}
	return b.String()
}

// changedSince names the inputs that differ from a previous rendering; every input when the
// previous one is unknown (an empty or foreign annotation) but differs as a whole.
func (r restartInputs) changedSince(prev string) []string {
	if prev == r.String() {
		return nil
	}
	old := parseInputs(prev)
	var changed []string
	for _, p := range r.parts {
		if old[p[0]] != p[1] {
			changed = append(changed, p[0])
		}
		delete(old, p[0])
	}
	for _, k := range optionalInputs { // no longer set; other keys are not ours to report
		if _, ok := old[k]; ok {
			changed = append(changed, k)
		}
	}
	if slices.Contains(changed, "store") { // a new store comes with its Secret: one change
		changed = slices.DeleteFunc(changed, func(k string) bool { return k == "storeSecret" })
	}
	return changed
}

// annotationAddressBaseline, on a workload whose pod template an operator wrote before it
// tracked the inherited address (no inheritedAddress restart input), records the address
// inputs its pods run with: the operator's upgrade then rolls nothing, and a later change of
// network or inheritAddressFrom still does.
const annotationAddressBaseline = "ilp.ilpfleet.dev/inherited-address-baseline"

// parseInputs reads a rendering of restart inputs (String) into name → hash; pairs without
// "=" are skipped.
func parseInputs(s string) map[string]string {
	m := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// dropUntrackedAddress leaves the inheritedAddress input out of r while the running template
// (prev) lacks it and the Connector's address inputs are still the workload's baseline (w's
// annotation, or none yet). It returns the baseline w must carry, "" when the input stays in.
func (r *restartInputs) dropUntrackedAddress(prev string, w client.Object) string {
	i := slices.IndexFunc(r.parts, func(p [2]string) bool { return p[0] == "inheritedAddress" })
	if i < 0 || prev == "" {
		return ""
	}
	if _, tracked := parseInputs(prev)["inheritedAddress"]; tracked {
		return ""
	}
	h := r.parts[i][1]
	if base := w.GetAnnotations()[annotationAddressBaseline]; base != "" && base != h {
		return "" // changed since the pods started: the input goes in, and they roll
	}
	r.parts = slices.Delete(r.parts, i, i+1)
	return h
}

// rolloutReason turns changed inputs into a condition reason and message.
func rolloutReason(changed []string) (reason, msg string) {
	reason = "RestartInputsChanged"
	if len(changed) == 1 {
		reason = strings.ToUpper(changed[0][:1]) + changed[0][1:] + "Changed"
	}
	return reason, fmt.Sprintf("pods roll because %s changed: these cannot be hot-reloaded", strings.Join(changed, ", "))
}

// shortHash is the first 8 bytes of the SHA-256 of v's JSON, hex: stable across runs because
// encoding/json sorts map keys.
func shortHash(v any) string {
	data, err := json.Marshal(v)
	if err != nil {
		// Spec types always marshal; a failure would still change the hash, never hide a change.
		data = []byte(err.Error())
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:8])
}
