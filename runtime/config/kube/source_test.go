package kube

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/internal/scheme"
	"github.com/ilpfleet/ilpfleet/internal/testlog"
	"github.com/ilpfleet/ilpfleet/internal/testport"
	"github.com/ilpfleet/ilpfleet/internal/testwait"
	"github.com/ilpfleet/ilpfleet/internal/warnlimit"
	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/connector"
)

// syncFixture is a Source on a fake API that starts a real connector (its BTP servers on
// 127.0.0.1), driven one sync at a time.
type syncFixture struct {
	t      *testing.T
	ctx    context.Context
	cl     client.Client
	src    *Source
	logs   *testlog.Buffer
	starts int // connectors started
	conn   *connector.Connector
}

func newSyncFixture(t *testing.T, retryRefused time.Duration, objs ...client.Object) *syncFixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	f := &syncFixture{t: t, ctx: ctx, logs: &testlog.Buffer{}}
	f.cl = fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(objs...).
		WithStatusSubresource(&ilpv1.Account{}, &ilpv1.Connector{}).Build()
	log := slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	f.src = &Source{opts: Options{Namespace: "ns", Connector: "alice", Pod: "alice-0", ReportInterval: time.Second,
		RetryRefused: retryRefused, ListenHost: "127.0.0.1", Start: f.start},
		log: log, cl: f.cl, secrets: newSecretCache(f.cl, "ns"), startDelay: retryInterval,
		failure: warnlimit.Gate{Every: repeatLogEvery}}
	f.src.report = newReporter(f.src)
	t.Cleanup(func() {
		if f.conn != nil {
			cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer ccancel()
			_ = f.conn.Close(cctx)
		}
	})
	return f
}

// start is Options.Start as the connector command has it: New, then Start, closed on failure.
func (f *syncFixture) start(ctx context.Context, cfg *config.Config) (Runtime, error) {
	c, err := connector.New(cfg, connector.Options{})
	if err != nil {
		return nil, err
	}
	if err := c.Start(ctx); err != nil {
		_ = c.Close(context.Background())
		return nil, err
	}
	f.starts++
	f.conn = c
	return c, nil
}

// sync runs one sync and returns its result.
func (f *syncFixture) sync() SyncResult {
	f.t.Helper()
	var res SyncResult
	f.src.opts.OnSync = func(r SyncResult) { res = r }
	f.src.sync(f.ctx)
	return res
}

// inForce reports whether the running connector's config has account id.
func (f *syncFixture) inForce(id string) bool {
	if f.conn == nil {
		return false
	}
	_, ok := f.conn.Config().Accounts[id]
	return ok
}

// condition is the Connector's ConfigApplied as the sync would write it.
func (f *syncFixture) condition() *metav1.Condition {
	f.src.report.mu.Lock()
	defer f.src.report.mu.Unlock()
	return f.src.report.cond
}

// childOn is a mini-accounts Account of alice listening on port.
func childOn(name string, created int, port int) *ilpv1.Account {
	a := account(name, created, func(s *ilpv1.AccountSpec) { s.Link.BTPChildServer.Port = int32(port) })
	a.UID = types.UID("uid-" + name)
	a.Generation = 1
	return &a
}

// takenPort is a port of 127.0.0.1 held by a listener until the test ends or free is called.
func takenPort(t *testing.T) (port int, free func()) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l.Addr().(*net.TCPAddr).Port, func() { _ = l.Close() }
}

func leftOut(res SyncResult, name string) bool {
	for _, p := range res.Problems {
		if p.Kind == "Account" && p.Name == name && strings.Contains(p.Message, "its link cannot start") {
			return true
		}
	}
	return false
}

// TestSyncLeavesOutAccountWhoseLinkCannotStart: an Account whose link cannot start (its port is
// taken; in a pod, a port below 1024 for a non-root process) is left out and the rest put in
// force, both when the connector starts and when it runs, instead of the whole config being
// refused (and every later change with it).
func TestSyncLeavesOutAccountWhoseLinkCannotStart(t *testing.T) {
	for _, atStart := range []bool{true, false} {
		t.Run(fmt.Sprintf("atStart=%t", atStart), func(t *testing.T) {
			taken, _ := takenPort(t)
			objs := []client.Object{testConnector(), childOn("good", 1, testport.Get(t))}
			if atStart {
				objs = append(objs, childOn("bad", 2, taken))
			}
			f := newSyncFixture(t, time.Hour, objs...)
			if !atStart {
				if res := f.sync(); res.Err != nil || f.starts != 1 {
					t.Fatalf("first sync: %+v", res)
				}
				// Then, together: an Account that cannot start, and one that can.
				for _, a := range []*ilpv1.Account{childOn("bad", 2, taken), childOn("more", 3, testport.Get(t))} {
					if err := f.cl.Create(f.ctx, a); err != nil {
						t.Fatal(err)
					}
				}
			}
			res := f.sync()
			if res.Err != nil || f.starts != 1 {
				t.Fatalf("sync: err %v, %d starts; want the connector running", res.Err, f.starts)
			}
			if !leftOut(res, "bad") || f.inForce("bad") || !f.inForce("good") || (!atStart && !f.inForce("more")) {
				t.Errorf("problems %+v, in force %v: want bad left out and the rest in force", res.Problems, f.conn.Config().Accounts)
			}
			c := f.condition()
			if c.Status != metav1.ConditionFalse || c.Reason != reasonPartial || !strings.Contains(c.Message, "Account bad: its link cannot start") {
				t.Errorf("ConfigApplied %+v; want ObjectsLeftOut naming bad", c)
			}
			// A later change still takes effect, with bad still left out and not tried again yet.
			if err := f.cl.Create(f.ctx, childOn("later", 4, testport.Get(t))); err != nil {
				t.Fatal(err)
			}
			if res := f.sync(); res.Err != nil || !f.inForce("later") || !leftOut(res, "bad") {
				t.Errorf("later change: %+v; want it in force, bad still left out", res)
			}
		})
	}
}

// TestSyncRetriesAccountWhoseLinkCannotStart: an Account left out for its link is tried again
// after RetryRefused (its port may be free by then), and comes back once it starts.
func TestSyncRetriesAccountWhoseLinkCannotStart(t *testing.T) {
	taken, free := takenPort(t)
	f := newSyncFixture(t, time.Millisecond, testConnector(), childOn("good", 1, testport.Get(t)), childOn("bad", 2, taken))
	res := f.sync()
	if !leftOut(res, "bad") || f.inForce("bad") {
		t.Fatalf("first sync: %+v; want bad left out", res)
	}
	free()
	testwait.Eventually(t, "bad back in force", 400, func() bool {
		res = f.sync()
		return res.Err == nil && f.inForce("bad") && len(res.Problems) == 0
	})
	if f.starts != 1 {
		t.Errorf("%d starts; want the running connector to take bad in", f.starts)
	}
}

// TestSyncLogsFailuresOnce: a failure every retry meets again is logged once, and the objects
// left out once while they stay the same.
func TestSyncLogsFailuresOnce(t *testing.T) {
	taken, _ := takenPort(t)
	conn := testConnector()
	f := newSyncFixture(t, time.Hour, conn, childOn("good", 1, testport.Get(t)), childOn("bad", 2, taken))
	for range 3 {
		f.sync()
	}
	if n := strings.Count(f.logs.String(), `msg="object left out of the configuration"`); n != 1 {
		t.Errorf("left-out object logged %d times; want once:\n%s", n, f.logs)
	}
	// A change the running connector refuses (its address), met again by every retry.
	conn.Spec.ILPAddress = "test.other"
	if err := f.cl.Update(f.ctx, conn); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if res := f.sync(); res.Err == nil {
			t.Fatal("a new address was applied to a running connector")
		}
	}
	logs := f.logs.String()
	if n := strings.Count(logs, `level=ERROR msg="configuration refused; the running config stays in force"`); n != 1 || !strings.Contains(logs, "ilpAddress cannot change") {
		t.Errorf("refusal logged %d times; want once, with the error:\n%s", n, logs)
	}
}

// TestSyncLogsFailedStartOnce: a connector that cannot start says so once, with the error, and
// spaces its tries out.
func TestSyncLogsFailedStartOnce(t *testing.T) {
	f := newSyncFixture(t, 30*time.Second, testConnector(), childOn("good", 1, testport.Get(t)))
	f.src.opts.Start = func(context.Context, *config.Config) (Runtime, error) {
		return nil, fmt.Errorf("opening the store: WRONGPASS invalid username-password pair")
	}
	var delays []time.Duration
	for range 8 {
		delays = append(delays, f.src.sync(f.ctx))
	}
	logs := f.logs.String()
	if n := strings.Count(logs, `level=ERROR msg="the connector cannot start; it tries again later"`); n != 1 || !strings.Contains(logs, "WRONGPASS") {
		t.Errorf("failed start logged %d times; want once, with the error:\n%s", n, logs)
	}
	if delays[0] != retryInterval || delays[len(delays)-1] != 30*time.Second {
		t.Errorf("retry delays %v; want from %v growing to RetryRefused", delays, retryInterval)
	}
	c := f.condition()
	if c.Reason != reasonApplyFailed || !strings.Contains(c.Message, "alice-0 has not started: ") || strings.Contains(c.Message, "previous configuration") {
		t.Errorf("ConfigApplied %+v; want it to say the pod has not started, and why", c)
	}
}

// TestSyncKeepsStoreUntilReplaced: a store change, which the operator carries out by replacing
// the pods, is not a failure of the running pod: it keeps its store, applies the rest and says
// it waits for its replacement.
func TestSyncKeepsStoreUntilReplaced(t *testing.T) {
	conn := testConnector()
	f := newSyncFixture(t, time.Hour, conn, childOn("good", 1, testport.Get(t)))
	if res := f.sync(); res.Err != nil {
		t.Fatal(res.Err)
	}
	conn.Spec.Store = &ilpv1.StoreSpec{Type: ilpv1.StoreFile}
	if err := f.cl.Update(f.ctx, conn); err != nil {
		t.Fatal(err)
	}
	if err := f.cl.Create(f.ctx, childOn("more", 2, testport.Get(t))); err != nil {
		t.Fatal(err)
	}
	res := f.sync()
	if res.Err != nil || !f.inForce("more") || f.conn.Config().Store != config.StoreMemory {
		t.Fatalf("sync: %+v, store %q; want the rest applied, the memory store kept", res, f.conn.Config().Store)
	}
	c := f.condition()
	if c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "keeps its store until the operator replaces it") {
		t.Errorf("ConfigApplied %+v; want True, saying it waits for its replacement", c)
	}
}

// TestSyncLeavesOutAccountWhoseNewPortCannotStart: an Account moved to a port its link cannot
// listen on is reconnected by the running connector, whose new link fails: it is left out and
// reported, rather than kept in force without a link while it looks applied.
func TestSyncLeavesOutAccountWhoseNewPortCannotStart(t *testing.T) {
	taken, _ := takenPort(t)
	moving := childOn("moving", 2, testport.Get(t))
	f := newSyncFixture(t, time.Hour, testConnector(), childOn("good", 1, testport.Get(t)), moving)
	if res := f.sync(); res.Err != nil || !f.inForce("moving") {
		t.Fatalf("first sync: %+v", res)
	}
	moving.Spec.Link.BTPChildServer.Port = int32(taken)
	moving.Generation = 2
	if err := f.cl.Update(f.ctx, moving); err != nil {
		t.Fatal(err)
	}
	res := f.sync()
	if res.Err != nil || !leftOut(res, "moving") || f.inForce("moving") || !f.inForce("good") {
		t.Errorf("sync: %+v; want moving left out, good in force", res)
	}
}
