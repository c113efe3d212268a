package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/internal/scheme"
	"github.com/ilpfleet/ilpfleet/internal/testlog"
	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// stillRuntime is a running connector whose accounts are all down with a zero balance.
type stillRuntime struct{}

func (stillRuntime) Apply(context.Context, *config.Config) error    { return nil }
func (stillRuntime) Connected(string) bool                          { return false }
func (stillRuntime) Balance(context.Context, string) (int64, error) { return 0, nil }
func (stillRuntime) Address() ilp.Address                           { return "" }

// conditionWrite is one server-side apply of an Account's or a Route's ConfigApplied.
type conditionWrite struct {
	kind    string
	account string // the object's name
	manager string
	cond    metav1.Condition
}

// reportFixture is a Source on a fake API whose server-side applies of Account and Route
// conditions are recorded and carried out (the condition replaces the one of its type, as for a map list).
type reportFixture struct {
	src    *Source
	cl     client.Client
	writes []conditionWrite
	refuse error // the answer to every apply of an Account's or Route's condition, when set
}

func newReportFixture(t *testing.T, objs ...client.Object) *reportFixture {
	t.Helper()
	f := &reportFixture{}
	f.cl = fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(objs...).
		WithStatusSubresource(&ilpv1.Account{}, &ilpv1.Connector{}, &ilpv1.Route{}).
		WithInterceptorFuncs(interceptor.Funcs{SubResourcePatch: f.patch}).Build()
	f.src = f.source()
	return f
}

// source is a new Source on the fixture's API: a restarted pod, or a new Lease holder.
func (f *reportFixture) source() *Source {
	s := &Source{opts: Options{Namespace: "ns", Connector: "alice", ReportInterval: time.Second}, log: slog.New(slog.DiscardHandler), cl: f.cl, rt: stillRuntime{}}
	s.report = newReporter(s)
	return s
}

func (f *reportFixture) patch(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
	if p.Type() != types.ApplyPatchType {
		return c.SubResource(sub).Patch(ctx, obj, p, opts...)
	}
	if _, ok := obj.(*ilpv1.Connector); ok {
		return nil // the Connector's ConfigApplied: not what these tests look at
	}
	if f.refuse != nil {
		return f.refuse
	}
	data, err := p.Data(obj)
	if err != nil {
		return err
	}
	var body struct {
		Status struct {
			Conditions []metav1.Condition `json:"conditions"`
		} `json:"status"`
	}
	if err := json.Unmarshal(data, &body); err != nil {
		return err
	}
	po := &client.SubResourcePatchOptions{}
	po.ApplyOptions(opts)
	if len(body.Status.Conditions) != 1 || po.FieldManager == "" || po.Force == nil || !*po.Force {
		return fmt.Errorf("apply of %s: want one condition, a field manager and force: %s %+v", obj.GetName(), data, po)
	}
	cur := obj.DeepCopyObject().(client.Object)
	if err := c.Get(ctx, client.ObjectKeyFromObject(obj), cur); err != nil {
		return err
	}
	var conds *[]metav1.Condition
	kind := kindAccount
	switch o := cur.(type) {
	case *ilpv1.Account:
		conds = &o.Status.Conditions
	case *ilpv1.Route:
		conds, kind = &o.Status.Conditions, kindRoute
	default:
		return fmt.Errorf("apply of the status of a %T", cur)
	}
	cond := body.Status.Conditions[0]
	meta.RemoveStatusCondition(conds, cond.Type)
	*conds = append(*conds, cond)
	if err := c.Status().Update(ctx, cur); err != nil {
		return err
	}
	f.writes = append(f.writes, conditionWrite{kind, obj.GetName(), po.FieldManager, cond})
	return nil
}

// sync records the outcome of building the config from accounts, as Source.sync does.
func (f *reportFixture) sync(t *testing.T, s *Source, accounts []ilpv1.Account, applyErr error) {
	t.Helper()
	f.syncInputs(t, s, Inputs{Accounts: accounts}, applyErr)
}

// syncInputs is sync with more inputs: Routes, SettlementEngines, Secrets, the config in force.
func (f *reportFixture) syncInputs(t *testing.T, s *Source, in Inputs, applyErr error) *config.Config {
	t.Helper()
	in.Connector, in.ListenHost = testConnector(), "127.0.0.1"
	if in.Secret == nil {
		in.Secret = secrets(nil)
	}
	cfg, problems, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	s.report.setConfig(testConnector(), cfg, in.Accounts, in.Routes, problems, reasonApplied, applyErr, nil)
	return cfg
}

// take returns the writes since the last take.
func (f *reportFixture) take() []conditionWrite {
	w := f.writes
	f.writes = nil
	return w
}

func withGeneration(a ilpv1.Account, gen int64) ilpv1.Account {
	a.Generation = gen
	return a
}

func withCondition(a ilpv1.Account, c metav1.Condition) ilpv1.Account {
	c.LastTransitionTime = metav1.NewTime(time.Unix(1, 0))
	a.Status.Conditions = append(a.Status.Conditions, c)
	return a
}

func samePort(port int32) func(*ilpv1.AccountSpec) {
	return func(s *ilpv1.AccountSpec) { s.Link.BTPChildServer.Port = port }
}

func objects(accounts []ilpv1.Account) []client.Object {
	out := make([]client.Object, len(accounts))
	for i := range accounts {
		accounts[i].UID = types.UID("uid-" + accounts[i].Name)
		out[i] = &accounts[i]
	}
	return out
}

// TestAccountConfigAppliedWrites: the Lease holder writes ConfigApplied on the Accounts it
// leaves out (False, the problem, the generation built), True over a False once an Account is
// in force again, and True at the new generation over a True about an older one (the pods are
// the only writer of ConfigApplied: its generation says what they run); never on an Account
// that carries none or a current True, never twice, and a restarted pod rewrites nothing.
func TestAccountConfigAppliedWrites(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1000, 0)
	// first and second both listen on 7001: the later, second, is left out. old is in force
	// and still carries a False from before; moved carries a True about its generation 1 and is
	// at 2; fine carries a True at its generation; first carries nothing.
	accounts := []ilpv1.Account{
		withGeneration(account("first", 1, nil), 1),
		withGeneration(account("second", 2, samePort(7001)), 3),
		withCondition(withGeneration(account("old", 3, nil), 5), metav1.Condition{Type: ilpv1.ConditionConfigApplied, Status: metav1.ConditionFalse, Reason: ReasonLeftOut, ObservedGeneration: 4, Message: "was left out"}),
		withCondition(withGeneration(account("moved", 4, nil), 2), metav1.Condition{Type: ilpv1.ConditionConfigApplied, Status: metav1.ConditionTrue, Reason: reasonApplied, ObservedGeneration: 1, Message: "ran"}),
		withCondition(withGeneration(account("fine", 5, nil), 2), metav1.Condition{Type: ilpv1.ConditionConfigApplied, Status: metav1.ConditionTrue, Reason: reasonApplied, ObservedGeneration: 2, Message: "ran"}),
	}
	f := newReportFixture(t, objects(accounts)...)
	f.sync(t, f.src, accounts, nil)
	f.src.report.flush(ctx, now)
	got := f.take()
	if len(got) != 3 {
		t.Fatalf("writes = %+v, want moved (True), old (True) and second (False) only", got)
	}
	moved, old, second := got[0], got[1], got[2] // sorted by name
	if c := moved.cond; moved.account != "moved" || c.Status != metav1.ConditionTrue || c.ObservedGeneration != 2 || !c.LastTransitionTime.Equal(&metav1.Time{Time: time.Unix(1, 0)}) {
		t.Errorf("moved: %+v, want True at generation 2, its transition time kept", moved)
	}
	if c := second.cond; second.account != "second" || c.Status != metav1.ConditionFalse || c.Reason != ReasonLeftOut || c.ObservedGeneration != 3 ||
		!strings.Contains(c.Message, "port 7001") || !strings.Contains(c.Message, `"first"`) || second.manager != FieldManager {
		t.Errorf("second: %+v, want False LeftOut at generation 3 naming port 7001 and first, under %s", second, FieldManager)
	}
	if c := old.cond; old.account != "old" || c.Status != metav1.ConditionTrue || c.Reason != reasonApplied || c.ObservedGeneration != 5 || !c.LastTransitionTime.Equal(&metav1.Time{Time: now}) {
		t.Errorf("old: %+v, want True Applied at generation 5, transition now", old)
	}

	f.src.report.flush(ctx, now.Add(time.Hour))
	if got := f.take(); len(got) != 0 {
		t.Errorf("a second flush of the same config wrote %+v", got)
	}

	// A restarted pod, or a new Lease holder: what the API holds is already right.
	restarted := f.source()
	f.sync(t, restarted, accounts, nil)
	restarted.report.flush(ctx, now.Add(2*time.Hour))
	if got := f.take(); len(got) != 0 {
		t.Errorf("a new Lease holder rewrote %+v", got)
	}
}

// TestAccountConfigAppliedFollowsTheConfigInForce: a fixed Account gets True even when the sync
// read it before the False reached the cache; a config the runtime refused changes nothing; an
// Account deleted is forgotten.
func TestAccountConfigAppliedFollowsTheConfigInForce(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1000, 0)
	clash := []ilpv1.Account{account("first", 1, nil), withGeneration(account("second", 2, samePort(7001)), 1)}
	f := newReportFixture(t, objects(clash)...)
	r := f.src.report
	f.sync(t, f.src, clash, nil)
	r.flush(ctx, now)
	if got := f.take(); len(got) != 1 || got[0].cond.Status != metav1.ConditionFalse {
		t.Fatalf("writes = %+v, want second False", got)
	}

	fixed := []ilpv1.Account{clash[0], withGeneration(account("second", 2, nil), 2)} // no condition: read before the write
	fixed[1].UID = clash[1].UID
	f.sync(t, f.src, fixed, errors.New("port 7002 in use"))
	r.flush(ctx, now.Add(time.Hour))
	if got := f.take(); len(got) != 0 {
		t.Errorf("a refused config wrote %+v", got)
	}

	f.sync(t, f.src, fixed, nil)
	r.flush(ctx, now.Add(2*time.Hour))
	if got := f.take(); len(got) != 1 || got[0].account != "second" || got[0].cond.Status != metav1.ConditionTrue || got[0].cond.ObservedGeneration != 2 {
		t.Fatalf("writes = %+v, want second True at generation 2", got)
	}

	f.sync(t, f.src, fixed[:1], nil)
	r.flush(ctx, now.Add(3*time.Hour))
	if got := f.take(); len(got) != 0 || len(r.have) != 0 {
		t.Errorf("after second is gone: writes %+v, remembered %v", got, r.have)
	}

	// Deleted and created again within one sync, with the same clash: a new object, written.
	if err := f.cl.Delete(ctx, &clash[1]); err != nil {
		t.Fatal(err)
	}
	f.sync(t, f.src, clash, nil)
	r.flush(ctx, now.Add(4*time.Hour))
	f.take()
	again := withGeneration(account("second", 2, samePort(7001)), 1)
	if err := f.cl.Create(ctx, &again); err != nil {
		t.Fatal(err)
	}
	again.UID = "uid-second-again"
	if err := f.cl.Update(ctx, &again); err != nil {
		t.Fatal(err)
	}
	f.sync(t, f.src, []ilpv1.Account{clash[0], again}, nil)
	r.flush(ctx, now.Add(5*time.Hour))
	if got := f.take(); len(got) != 1 || got[0].account != "second" || got[0].cond.Status != metav1.ConditionFalse {
		t.Errorf("writes = %+v, want the new second False", got)
	}
}

// TestRefusedConfigKeepsTheReportedAccounts: the Accounts whose connected flag and balance the
// pods report are those of the config in force, not those of a config the runtime refused.
func TestRefusedConfigKeepsTheReportedAccounts(t *testing.T) {
	first, second := account("first", 1, nil), account("second", 2, nil)
	f := newReportFixture(t, objects([]ilpv1.Account{first, second})...)
	r := f.src.report
	f.sync(t, f.src, []ilpv1.Account{first}, nil)
	f.sync(t, f.src, []ilpv1.Account{first, second}, errors.New("refused"))
	if got := strings.Join(r.accounts, ","); got != "first" {
		t.Errorf("reported accounts %q after a refused config, want those in force: first", got)
	}
}

// TestAccountConfigAppliedBudget: many Accounts left out at once are written over several
// flushes, at most maxAccountWrites each, each once.
func TestAccountConfigAppliedBudget(t *testing.T) {
	ctx := context.Background()
	const n = 2*maxAccountWrites + 20
	accounts := make([]ilpv1.Account, n+1)
	accounts[0] = account("owner", 0, samePort(7999))
	for i := 1; i <= n; i++ {
		accounts[i] = account("acct-"+strconv.Itoa(i), i, samePort(7999))
	}
	f := newReportFixture(t, objects(accounts)...)
	f.sync(t, f.src, accounts, nil)
	seen := map[string]int{}
	now := time.Unix(1000, 0)
	for round := range 5 {
		f.src.report.flush(ctx, now.Add(time.Duration(round)*time.Millisecond))
		got := f.take()
		if len(got) > maxAccountWrites {
			t.Errorf("flush %d wrote %d conditions, more than %d", round, len(got), maxAccountWrites)
		}
		for _, w := range got {
			seen[w.account]++
		}
	}
	if len(seen) != n {
		t.Errorf("%d Accounts got their condition, want %d", len(seen), n)
	}
	for name, k := range seen {
		if k != 1 {
			t.Errorf("%s written %d times", name, k)
		}
	}
}

func route(name string, created int, prefix, hop string, gen int64) ilpv1.Route {
	return ilpv1.Route{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("uid-" + name), Generation: gen,
		CreationTimestamp: metav1.NewTime(time.Unix(int64(created), 0))},
		Spec: ilpv1.RouteSpec{ConnectorRef: "alice", TargetPrefix: prefix, NextHop: hop}}
}

// TestRouteConfigAppliedWrites: the pods write ConfigApplied on the Routes they leave out (False
// LeftOut with the problem, at the generation built: a prefix an older Route has, a next hop
// left out), and True over that False once they run the Route again; a Route they always ran
// gets nothing. The operator reads this, not the Connector's message.
func TestRouteConfigAppliedWrites(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1000, 0)
	accounts := []ilpv1.Account{account("first", 1, nil), withGeneration(account("second", 2, samePort(7001)), 1)}
	routes := []ilpv1.Route{route("r", 1, "test.a", "first", 1), route("r2", 2, "test.a", "first", 4), route("r3", 3, "test.b", "second", 1)}
	objs := objects(accounts)
	for i := range routes {
		objs = append(objs, &routes[i])
	}
	f := newReportFixture(t, objs...)
	f.syncInputs(t, f.src, Inputs{Accounts: accounts, Routes: routes}, nil)
	f.src.report.flush(ctx, now)
	var got []conditionWrite
	for _, w := range f.take() {
		if w.kind == kindRoute {
			got = append(got, w)
		}
	}
	if len(got) != 2 {
		t.Fatalf("Route writes = %+v, want r2 and r3 (False)", got)
	}
	for i, want := range []struct {
		name, msg string
		gen       int64
	}{
		{"r2", `the connector pods leave this route out of their configuration: Route r already has prefix "test.a"`, 4},
		{"r3", `the connector pods leave this route out of their configuration: next hop "second" is not a configured account of this connector`, 1},
	} {
		c := got[i].cond
		if got[i].account != want.name || c.Status != metav1.ConditionFalse || c.Reason != ReasonLeftOut || c.Message != want.msg ||
			c.ObservedGeneration != want.gen || got[i].manager != FieldManager {
			t.Errorf("write %d: %+v, want %s False LeftOut at generation %d: %s", i, got[i], want.name, want.gen, want.msg)
		}
	}

	// Fixed: second gets its own port, r2 its own prefix.
	accounts[1] = withGeneration(account("second", 2, nil), 2)
	accounts[1].UID = "uid-second"
	routes[1].Spec.TargetPrefix, routes[1].Generation = "test.c", 5
	for i := range routes { // the sync reads the Routes with the pods' False
		if err := f.cl.Get(ctx, client.ObjectKeyFromObject(&routes[i]), &routes[i]); err != nil {
			t.Fatal(err)
		}
	}
	routes[1].Spec.TargetPrefix, routes[1].Generation = "test.c", 5
	f.syncInputs(t, f.src, Inputs{Accounts: accounts, Routes: routes}, nil)
	f.src.report.flush(ctx, now.Add(time.Hour))
	got = nil
	for _, w := range f.take() {
		if w.kind == kindRoute {
			got = append(got, w)
		}
	}
	if len(got) != 2 || got[0].account != "r2" || got[0].cond.Status != metav1.ConditionTrue || got[0].cond.ObservedGeneration != 5 ||
		got[1].account != "r3" || got[1].cond.Status != metav1.ConditionTrue || got[1].cond.Message != "the connector pods run this route" {
		t.Errorf("Route writes = %+v, want r2 True at generation 5 and r3 True", got)
	}
	f.src.report.flush(ctx, now.Add(2*time.Hour))
	if got := f.take(); len(got) != 0 {
		t.Errorf("a second flush wrote %+v", got)
	}
}

// TestAccountNotFullyApplied: an Account the pods keep in their config with a problem — its
// previous version kept because its Secret cannot be read, or run without settlement because
// its SettlementEngine settles another asset — is not reported as applied: ConfigApplied False,
// NotFullyApplied, the problem as message; the Connector lists it as not fully applied, not as
// left out. Once the problem is gone, True over the False.
func TestAccountNotFullyApplied(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1000, 0)
	eur := ilpv1.SettlementEngine{ObjectMeta: metav1.ObjectMeta{Name: "eur", Namespace: "ns"}, Spec: ilpv1.SettlementEngineSpec{AssetCode: "EUR", AssetScale: 9, Port: 3000}}
	accounts := []ilpv1.Account{
		withGeneration(btpClient("up", 1, "tok"), 1),
		withGeneration(account("wrong", 2, func(s *ilpv1.AccountSpec) { s.SettlementEngineRef = "eur" }), 1),
	}
	f := newReportFixture(t, objects(accounts)...)
	good := secrets(map[string]map[string]string{"tok": {"t": "one"}})
	prev := f.syncInputs(t, f.src, Inputs{Accounts: accounts, SettlementEngines: []ilpv1.SettlementEngine{eur}, Secret: good}, nil)
	f.src.report.flush(ctx, now)
	got := f.take()
	if len(got) != 1 || got[0].account != "wrong" || got[0].cond.Status != metav1.ConditionFalse || got[0].cond.Reason != ReasonNotFullyApplied ||
		!strings.Contains(got[0].cond.Message, "the account runs without settlement") {
		t.Errorf("writes = %+v, want wrong False NotFullyApplied, without settlement", got)
	}
	c := f.src.report.cond
	if c.Status != metav1.ConditionFalse || c.Reason != reasonNotFully || strings.Contains(c.Message, "left out") ||
		!strings.Contains(c.Message, "with 2 accounts; not fully applied: Account wrong: settlementEngineRef") {
		t.Errorf("Connector ConfigApplied %s %s: %s; want False %s listing wrong as not fully applied", c.Status, c.Reason, c.Message, reasonNotFully)
	}

	// up's Secret renamed to one that does not exist: its previous version runs.
	accounts[0] = withGeneration(btpClient("up", 1, "tok-typo"), 2)
	accounts[0].UID = "uid-up"
	accounts[1].Spec.SettlementEngineRef = ""
	accounts[1].Generation = 2
	if err := f.cl.Get(ctx, client.ObjectKeyFromObject(&accounts[1]), &accounts[1]); err != nil { // with the pods' False
		t.Fatal(err)
	}
	accounts[1].Spec.SettlementEngineRef, accounts[1].Generation = "", 2
	f.syncInputs(t, f.src, Inputs{Accounts: accounts, SettlementEngines: []ilpv1.SettlementEngine{eur}, Secret: good, Previous: prev}, nil)
	f.src.report.flush(ctx, now.Add(time.Hour))
	got = f.take()
	if len(got) != 2 {
		t.Fatalf("writes = %+v, want up False and wrong True", got)
	}
	if c := got[0].cond; got[0].account != "up" || c.Status != metav1.ConditionFalse || c.Reason != ReasonNotFullyApplied || c.ObservedGeneration != 2 ||
		!strings.Contains(c.Message, `Secret "tok-typo" does not exist in namespace ns; the connector keeps running this account's previous version`) {
		t.Errorf("up: %+v, want False NotFullyApplied at generation 2, previous version kept", got[0])
	}
	if c := got[1].cond; got[1].account != "wrong" || c.Status != metav1.ConditionTrue || c.ObservedGeneration != 2 {
		t.Errorf("wrong: %+v, want True at generation 2", got[1])
	}
	if c := f.src.report.cond; c.Reason != reasonNotFully || !strings.Contains(c.Message, "not fully applied: Account up: ") {
		t.Errorf("Connector ConfigApplied %s: %s; want up not fully applied", c.Reason, c.Message)
	}
}

// TestConnectorConditionListsBoth: with Accounts left out and Accounts not fully applied, the
// Connector's ConfigApplied is ObjectsLeftOut and lists each group under its own heading.
func TestConnectorConditionListsBoth(t *testing.T) {
	cfg := &config.Config{Accounts: map[string]config.Account{"kept": {}}}
	conn := testConnector()
	conn.Generation = 3
	problems := []Problem{{Kind: kindAccount, Name: "kept", Message: "x; the account runs without settlement"}, {Kind: kindRoute, Name: "r", Message: "next hop"}, {Kind: kindAccount, Name: "gone", Message: "port"}}
	c := connectorCondition(conn, cfg, problems, reasonApplied, nil, nil, "alice-0", true)
	want := "alice-0 runs generation 3 with 1 accounts; left out: Account gone: port; Route r: next hop; not fully applied: Account kept: x; the account runs without settlement"
	if c.Status != metav1.ConditionFalse || c.Reason != reasonPartial || c.Message != want {
		t.Errorf("ConfigApplied %s %s: %q; want False %s: %q", c.Status, c.Reason, c.Message, reasonPartial, want)
	}
}

// TestReporterForgetsAccountsNoLongerRun: an Account left out in the same sync as another is
// added (as many Accounts as before) is forgotten all the same, so that once it runs again its
// status is written again — the operator clears connected while no pod runs it.
func TestReporterForgetsAccountsNoLongerRun(t *testing.T) {
	f := newReportFixture(t)
	r := f.src.report
	r.written["a"], r.written["b"] = accountStatus{connected: true, balance: "0"}, accountStatus{connected: true, balance: "0"}
	r.accounts = []string{"a", "c"}
	r.flush(context.Background(), time.Now())
	if _, ok := r.written["b"]; ok {
		t.Error("the reporter still remembers b's status, which it no longer writes")
	}
}

// TestFailureKey: the same objects left out give the same key whatever generation, number of
// accounts or pod the message names; other objects another key.
func TestFailureKey(t *testing.T) {
	problems := []Problem{{Kind: kindAccount, Name: "gone", Message: "port"}}
	msg := func(gen int64, accounts int, pod string, problems []Problem) string {
		conn := testConnector()
		conn.Generation = gen
		cfg := &config.Config{Accounts: map[string]config.Account{}}
		for i := range accounts {
			cfg.Accounts[fmt.Sprint("a", i)] = config.Account{}
		}
		return connectorCondition(conn, cfg, problems, reasonApplied, nil, nil, pod, true).Message
	}
	a, b := msg(3, 1, "alice-0", problems), msg(4, 2, "alice-7c9d-x2", problems)
	if FailureKey(a) != FailureKey(b) {
		t.Errorf("keys differ:\n%q\n%q", FailureKey(a), FailureKey(b))
	}
	if other := msg(3, 1, "alice-0", []Problem{{Kind: kindAccount, Name: "other", Message: "port"}}); FailureKey(other) == FailureKey(a) {
		t.Errorf("another failure has the same key %q", FailureKey(a))
	}
	if FailureKey("pod alice-0: "+a) != FailureKey(a) {
		t.Error("the key of a status.pods entry's message, named by its pod, differs")
	}
}

// TestRefusedConditionWriteWarnsSparingly: a write of an Account's ConfigApplied that the API
// server refuses (the operator away: a new Account's status not yet in the pods' Role) is
// retried at every report interval and logged at WARN once per repeatLogEvery, the retries in
// between at DEBUG.
func TestRefusedConditionWriteWarnsSparingly(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1000, 0)
	accounts := []ilpv1.Account{withGeneration(account("first", 1, nil), 1), withGeneration(account("second", 2, samePort(7001)), 1)}
	f := newReportFixture(t, objects(accounts)...)
	f.refuse = apierrors.NewForbidden(schema.GroupResource{Group: ilpv1.GroupVersion.Group, Resource: "accounts"}, "second", errors.New("not in the Role"))
	var buf testlog.Buffer
	f.src.log = slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.sync(t, f.src, accounts, nil)
	for i := range 6 { // retried at every report interval (1 s)
		f.src.report.flush(ctx, now.Add(time.Duration(i)*time.Second))
	}
	f.src.report.flush(ctx, now.Add(repeatLogEvery))
	var levels []any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		if msg, _ := r["msg"].(string); strings.HasPrefix(msg, "cannot write a ConfigApplied condition") {
			levels = append(levels, r["level"])
		}
	}
	want := []any{"WARN", "DEBUG", "DEBUG", "DEBUG", "DEBUG", "DEBUG", "WARN"}
	if !reflect.DeepEqual(levels, want) {
		t.Errorf("refused writes logged at %v; want %v", levels, want)
	}
}
