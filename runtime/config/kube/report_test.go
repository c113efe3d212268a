package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/internal/scheme"
	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// stillRuntime is a running connector whose accounts are all down with a zero balance.
type stillRuntime struct{}

func (stillRuntime) Apply(context.Context, *config.Config) error    { return nil }
func (stillRuntime) Connected(string) bool                          { return false }
func (stillRuntime) Balance(context.Context, string) (int64, error) { return 0, nil }
func (stillRuntime) Address() ilp.Address                           { return "" }

// conditionWrite is one server-side apply of an Account's ConfigApplied.
type conditionWrite struct {
	account string
	manager string
	cond    metav1.Condition
}

// reportFixture is a Source on a fake API whose server-side applies of Account conditions are
// recorded and carried out (the condition replaces the one of its type, as for a map list).
type reportFixture struct {
	src    *Source
	cl     client.Client
	writes []conditionWrite
}

func newReportFixture(t *testing.T, objs ...client.Object) *reportFixture {
	t.Helper()
	f := &reportFixture{}
	f.cl = fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(objs...).
		WithStatusSubresource(&ilpv1.Account{}, &ilpv1.Connector{}).
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
	if _, ok := obj.(*ilpv1.Account); !ok {
		return nil // the Connector's ConfigApplied: not what these tests look at
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
	var a ilpv1.Account
	if err := c.Get(ctx, client.ObjectKeyFromObject(obj), &a); err != nil {
		return err
	}
	cond := body.Status.Conditions[0]
	meta.RemoveStatusCondition(&a.Status.Conditions, cond.Type)
	a.Status.Conditions = append(a.Status.Conditions, cond)
	if err := c.Status().Update(ctx, &a); err != nil {
		return err
	}
	f.writes = append(f.writes, conditionWrite{obj.GetName(), po.FieldManager, cond})
	return nil
}

// sync records the outcome of building the config from accounts, as Source.sync does.
func (f *reportFixture) sync(t *testing.T, s *Source, accounts []ilpv1.Account, applyErr error) {
	t.Helper()
	cfg, problems, err := Build(Inputs{Connector: testConnector(), Accounts: accounts, Secret: secrets(nil), ListenHost: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	s.report.setConfig(testConnector(), cfg, accounts, problems, reasonApplied, applyErr, nil)
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
// leaves out (False, the problem, the generation built), and True over a False once an Account
// is in force again; never on a healthy Account, never twice, and a restarted pod rewrites
// nothing.
func TestAccountConfigAppliedWrites(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1000, 0)
	// first and second both listen on 7001: the later, second, is left out. old is in force
	// and still carries a False from before; fine carries a True; first carries nothing.
	accounts := []ilpv1.Account{
		withGeneration(account("first", 1, nil), 1),
		withGeneration(account("second", 2, samePort(7001)), 3),
		withCondition(withGeneration(account("old", 3, nil), 5), metav1.Condition{Type: ilpv1.ConditionConfigApplied, Status: metav1.ConditionFalse, Reason: reasonLeftOut, ObservedGeneration: 4, Message: "was left out"}),
		withCondition(withGeneration(account("fine", 4, nil), 2), metav1.Condition{Type: ilpv1.ConditionConfigApplied, Status: metav1.ConditionTrue, Reason: reasonApplied, ObservedGeneration: 1, Message: "ran"}),
	}
	f := newReportFixture(t, objects(accounts)...)
	f.sync(t, f.src, accounts, nil)
	f.src.report.flush(ctx, now)
	got := f.take()
	if len(got) != 2 {
		t.Fatalf("writes = %+v, want second (False) and old (True) only", got)
	}
	second, old := got[1], got[0] // sorted by name
	if c := second.cond; second.account != "second" || c.Status != metav1.ConditionFalse || c.Reason != reasonLeftOut || c.ObservedGeneration != 3 ||
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
	if got := f.take(); len(got) != 0 || len(r.acctHave) != 0 {
		t.Errorf("after second is gone: writes %+v, remembered %v", got, r.acctHave)
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
