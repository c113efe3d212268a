// Package kube is the Kubernetes config source of the connector runtime: inside a connector
// pod it watches the pod's own Connector (by name: the pod's Role grants list/watch only with a
// metadata.name field selector) and the Accounts, Routes and SettlementEngines of its namespace
// that reference it, reads the Secrets they name uncached (re-reading one only when the
// operator records a new resourceVersion in Connector.status.secretVersions), builds a runtime
// config from them, and applies it to the running connector without a restart. It reports back:
// the ConfigApplied condition of the Connector, its inherited address, the connected flag and
// balance of each Account and the ConfigApplied condition of each Account left out (from the
// pod holding the Lease), and each pod's own entry of status.pods.
//
// It follows CloudNativePG's in-pod instance manager: a controller-runtime manager whose cache
// holds only what this pod may read. It never imports the operator (controllers/).
package kube

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/internal/scheme"
	"github.com/ilpfleet/ilpfleet/internal/warnlimit"
	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// Defaults of Options.
const (
	DefaultDebounce       = 100 * time.Millisecond
	DefaultReportInterval = 2 * time.Second
	// retryInterval is how soon a sync that met a passing failure (a Secret not readable yet,
	// the API server away) runs again.
	retryInterval = time.Second
	// grantWait is how long a sync's report waits for the operator to grant the Secret of a
	// new Account (Problem.Awaiting): it does so as soon as it sees the Account, which the pods
	// may see first. Reporting the Account as left out meanwhile made the Connector not Ready,
	// with a Warning Event, for every new peer whose Secret was applied with it.
	grantWait = 10 * time.Second
	// FieldManager owns the fields the pods write on status (the ConfigApplied condition of the
	// Connector and of the Accounts): the operator writes the other conditions under its own
	// name, so the two never take each other's fields.
	FieldManager = "ilpfleet-connector-runtime"
	// AddressFieldManager owns Connector.status.address while the address is inherited: the
	// Lease holder writes it once the parent answered IL-DCP. A manager of its own, because a
	// server-side apply drops the fields its manager applied before and left out this time:
	// under FieldManager, each ConfigApplied write would remove the address.
	AddressFieldManager = "ilpfleet-connector-address"
)

// Runtime is what the source drives: the running connector (runtime/connector.Connector).
type Runtime interface {
	Apply(ctx context.Context, cfg *config.Config) error
	Connected(id string) bool
	Balance(ctx context.Context, id string) (int64, error)
	// Address is the connector's ILP address, "" while an inherited one is not known yet.
	Address() ilp.Address
}

// Options configure a Source.
type Options struct {
	// Config reaches the API server as the pod's ServiceAccount (rest.InClusterConfig in a pod).
	Config    *rest.Config
	Namespace string // POD_NAMESPACE
	Connector string // --connector: the Connector this pod runs
	// Pod is POD_NAME: named in status messages, and the key of this pod's entry of
	// Connector.status.pods ("": no entry is written).
	Pod string
	// Start starts the runtime with the first valid config; later configs go to its Apply. A
	// Start that fails is reported and tried again with the next config.
	Start  func(ctx context.Context, cfg *config.Config) (Runtime, error)
	Logger *slog.Logger // nil: discard
	// Debounce gathers a burst of changes (an `kubectl apply` of many objects) into one Apply:
	// a sync runs once no change came for a quarter of it, and at most Debounce after the
	// first change. 0: DefaultDebounce.
	Debounce time.Duration
	// ReportInterval is the least time between two status writes to one object. 0: DefaultReportInterval.
	ReportInterval time.Duration
	// RetryRefused is how soon a config the running connector refused (Apply failed, perhaps
	// for a passing reason such as a port still in use) is applied again when no change comes
	// first. 0: config.RetryRefused.
	RetryRefused time.Duration
	// ListenHost is the interface the BTP and ILP-over-HTTP servers bind: "" for every
	// interface (a pod).
	ListenHost string
	// DisableLeaderElection makes this pod write status without holding the Lease: only for a
	// single runtime per Connector (tests, replicas 1).
	DisableLeaderElection bool
	// OnSync, if set, is called after every sync with its result (tests, benchmarks).
	OnSync func(SyncResult)
}

// SyncResult is the outcome of one sync: build the config from the API objects and apply it.
type SyncResult struct {
	Generation int64     // of the Connector
	Accounts   int       // accounts in the applied config
	Problems   []Problem // objects left out
	Err        error     // nil: the config is in force
	Begin      time.Time // when the sync started (after the debounce)
	End        time.Time
}

// Source is the Kubernetes config source of one connector pod.
type Source struct {
	opts    Options
	log     *slog.Logger
	mgr     manager.Manager
	cl      client.Client
	secrets *secretCache
	poke    chan struct{}
	report  *reporter
	pods    *podReporter // nil without Options.Pod

	mu      sync.Mutex
	rt      Runtime
	running *config.Config

	// Owned by the sync loop.
	linkFailed map[string]*linkFailure // Accounts left out because their link could not start
	startDelay time.Duration           // before a failed start is tried again
	failure    warnlimit.Gate          // of a failed sync
	leftOut    map[string]string       // the problems of each object left out, as last logged
	awaiting   map[string]time.Time    // since when each object has waited for a Secret's grant
}

// New builds the source and its manager; nothing runs until Run.
func New(opts Options) (*Source, error) {
	switch {
	case opts.Config == nil:
		return nil, errors.New("kube source: no API server config")
	case opts.Namespace == "":
		return nil, errors.New("kube source: no namespace (set POD_NAMESPACE)")
	case opts.Connector == "":
		return nil, errors.New("kube source: no Connector name (set --connector)")
	case opts.Start == nil:
		return nil, errors.New("kube source: no Start function")
	}
	if opts.RetryRefused <= 0 {
		opts.RetryRefused = config.RetryRefused
	}
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	if opts.ReportInterval <= 0 {
		opts.ReportInterval = DefaultReportInterval
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mgr, err := ctrl.NewManager(opts.Config, managerOptions(opts, log))
	if err != nil {
		return nil, fmt.Errorf("kube source: %w", err)
	}
	s := &Source{opts: opts, log: log, mgr: mgr, cl: mgr.GetClient(),
		secrets: newSecretCache(mgr.GetAPIReader(), opts.Namespace), poke: make(chan struct{}, 1), startDelay: retryInterval,
		failure: warnlimit.Gate{Every: repeatLogEvery}}
	s.report = newReporter(s)
	if err := mgr.Add(everyPod(s.syncLoop)); err != nil {
		return nil, err
	}
	if err := mgr.Add(s.report); err != nil {
		return nil, err
	}
	if opts.Pod != "" {
		s.pods = newPodReporter(s)
		if err := mgr.Add(s.pods); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// everyPod is a runnable that runs on every pod, Lease or not: a manager runs a plain
// RunnableFunc only on the Lease holder, which would leave the other replicas unconfigured.
type everyPod func(context.Context) error

func (f everyPod) Start(ctx context.Context) error { return f(ctx) }
func (everyPod) NeedLeaderElection() bool          { return false }

// managerOptions scope the cache to what the pod's Role allows: its own Connector by name, the
// namespace's Accounts, Routes and SettlementEngines; Secrets are never cached.
func managerOptions(opts Options, log *slog.Logger) ctrl.Options {
	ns := map[string]cache.Config{opts.Namespace: {}}
	return ctrl.Options{
		Scheme: scheme.New(),
		Logger: logr.FromSlogHandler(log.Handler()),
		Cache: cache.Options{
			DefaultNamespaces: ns,
			ByObject: map[client.Object]cache.ByObject{
				&ilpv1.Connector{}: {Field: fields.OneTermEqualSelector("metadata.name", opts.Connector)},
			},
		},
		Metrics:                       metricsserver.Options{BindAddress: "0"},
		LeaderElection:                !opts.DisableLeaderElection,
		LeaderElectionID:              LeaseName(opts.Connector),
		LeaderElectionNamespace:       opts.Namespace,
		LeaderElectionReleaseOnCancel: true,
	}
}

// LeaseName is the Lease whose holder writes a Connector's status when it has several pods.
func LeaseName(connector string) string { return connector + "-connector" }

// Run runs the source until ctx is done. The runtime it started is left to the caller to close.
func (s *Source) Run(ctx context.Context) error { return s.mgr.Start(ctx) }

// Runtime returns the runtime once the first config started it, else nil.
func (s *Source) Runtime() Runtime {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rt
}

// syncLoop watches the informers and syncs after each burst of relevant changes.
func (s *Source) syncLoop(ctx context.Context) error {
	if err := s.watch(ctx); err != nil {
		return err
	}
	if !s.mgr.GetCache().WaitForCacheSync(ctx) {
		return ctx.Err()
	}
	retryIn := s.sync(ctx)
	for {
		var after <-chan time.Time
		if retryIn > 0 {
			after = time.After(retryIn)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.poke:
			if !s.debounce(ctx) {
				return nil
			}
		case <-after:
		}
		retryIn = s.sync(ctx)
	}
}

// debounce waits until no change came for a quarter of Debounce, or Debounce has passed.
func (s *Source) debounce(ctx context.Context) bool {
	limit := time.NewTimer(s.opts.Debounce)
	defer limit.Stop()
	quiet := time.NewTimer(s.opts.Debounce / 4)
	defer quiet.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-limit.C:
			return true
		case <-quiet.C:
			return true
		case <-s.poke:
			quiet.Reset(s.opts.Debounce / 4)
		}
	}
}

func (s *Source) wake() {
	select {
	case s.poke <- struct{}{}:
	default:
	}
}

// watch registers the event handlers. Only changes that can change the config wake a sync:
// status writes (ours included) do not, except the operator's record of Secret versions.
func (s *Source) watch(ctx context.Context) error {
	c := s.mgr.GetCache()
	handlers := []struct {
		obj     client.Object
		mine    func(client.Object) bool
		changed func(old, new client.Object) bool
	}{
		{&ilpv1.Connector{}, func(client.Object) bool { return true }, connectorChanged},
		{&ilpv1.Account{}, func(o client.Object) bool { return o.(*ilpv1.Account).Spec.ConnectorRef == s.opts.Connector }, specChanged},
		{&ilpv1.Route{}, func(o client.Object) bool { return o.(*ilpv1.Route).Spec.ConnectorRef == s.opts.Connector }, specChanged},
		{&ilpv1.SettlementEngine{}, func(client.Object) bool { return true }, specChanged},
	}
	for _, h := range handlers {
		inf, err := c.GetInformer(ctx, h.obj, cache.BlockUntilSynced(false)) // sync all four at once
		if err != nil {
			return fmt.Errorf("kube source: informer for %T: %w", h.obj, err)
		}
		_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc: func(o any) {
				if obj, ok := o.(client.Object); ok && h.mine(obj) {
					s.wake()
				}
			},
			UpdateFunc: func(o, n any) {
				oo, ok1 := o.(client.Object)
				no, ok2 := n.(client.Object)
				if ok1 && ok2 && (h.mine(oo) || h.mine(no)) && h.changed(oo, no) {
					s.wake()
				}
			},
			DeleteFunc: func(o any) {
				if d, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
					o = d.Obj
				}
				if obj, ok := o.(client.Object); !ok || h.mine(obj) {
					s.wake()
				}
			},
		})
		if err != nil {
			return fmt.Errorf("kube source: handler for %T: %w", h.obj, err)
		}
	}
	return nil
}

func specChanged(o, n client.Object) bool {
	return o.GetGeneration() != n.GetGeneration() || !n.GetDeletionTimestamp().IsZero()
}

func connectorChanged(o, n client.Object) bool {
	oc, nc := o.(*ilpv1.Connector), n.(*ilpv1.Connector)
	return specChanged(o, n) || !mapsEqual(oc.Status.SecretVersions, nc.Status.SecretVersions)
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// sync builds the config from the cache and puts it in force. It returns how soon it should
// run again if nothing changes (0: not until something does): soon when something it read may
// come good by itself, RetryRefused when the running connector refused the config or an
// Account is left out because its link could not start, a growing delay while the connector
// cannot start.
func (s *Source) sync(ctx context.Context) (retryIn time.Duration) {
	res := SyncResult{Begin: time.Now()}
	defer func() {
		res.End = time.Now()
		if s.opts.OnSync != nil {
			s.opts.OnSync(res)
		}
	}()
	var conn ilpv1.Connector
	if err := s.cl.Get(ctx, client.ObjectKey{Namespace: s.opts.Namespace, Name: s.opts.Connector}, &conn); err != nil {
		res.Err = fmt.Errorf("reading Connector %s: %w", s.opts.Connector, err)
		s.logFailure(res.Begin, slog.LevelError, "cannot read this pod's Connector; the running config stays in force", res.Err)
		return retryIf(client.IgnoreNotFound(err) != nil)
	}
	res.Generation = conn.Generation
	var accounts ilpv1.AccountList
	var routes ilpv1.RouteList
	var engines ilpv1.SettlementEngineList
	if err := s.listCached(ctx, &accounts, &routes, &engines); err != nil {
		res.Err = err
		return retryInterval
	}
	reads := s.secrets.begin(ctx, conn.Status.SecretVersions)
	in := Inputs{Connector: &conn, Accounts: accounts.Items, Routes: routes.Items,
		SettlementEngines: engines.Items, Secret: reads.get, Previous: s.runningConfig(), ListenHost: s.opts.ListenHost}
	out := s.buildAndApply(ctx, in, res.Begin)
	reads.end()
	res.Problems, res.Err = out.problems, cmp.Or(out.buildErr, out.applyErr)
	out.problems = s.reportable(out.problems, res.Begin)
	s.logLeftOut(out.cfg, out.problems)
	if out.buildErr != nil {
		s.report.setConfig(&conn, nil, nil, nil, out.problems, reasonInvalid, out.buildErr, nil)
		s.logFailure(res.Begin, slog.LevelError, "invalid configuration; "+s.keeps(), out.buildErr)
		return retryIf(reads.transient)
	}
	res.Accounts = len(out.cfg.Accounts)
	reason := reasonApplied
	if out.applyErr != nil {
		reason = reasonApplyFailed
	}
	s.report.setConfig(&conn, out.cfg, accounts.Items, routes.Items, out.problems, reason, out.applyErr, out.pending)
	return s.retryAfter(out, reads.transient, res.Begin)
}

// reportable is problems without those that wait for the operator to grant a new Account's
// Secret (Problem.Awaiting) for less than grantWait so far, as of now: such an Account (and a
// Route through it) is left out unreported, like any Account the pods have not caught up with
// yet. It forgets the objects no longer waiting.
func (s *Source) reportable(problems []Problem, now time.Time) []Problem {
	since := make(map[string]time.Time)
	out := problems[:0:0]
	for _, p := range problems {
		if !p.Awaiting {
			out = append(out, p)
			continue
		}
		key := p.Kind + " " + p.Name
		t, ok := s.awaiting[key]
		if !ok {
			t = now
		}
		since[key] = t
		if now.Sub(t) >= grantWait {
			out = append(out, p)
		}
	}
	s.awaiting = since
	return out
}

// buildAndApply builds the config, leaving out the Accounts whose link could not start
// lately, and applies it. When the runtime refuses it only because links of some Accounts
// cannot start (a *connector.LinkStartError), it leaves those out too and tries again: one
// round per new set of such Accounts (each round leaves out at least one more), at most
// maxLeaveOutRounds. When leaving them out makes the config invalid — the parent an address
// is inherited from — it keeps them in and returns the attempt whose links failed: that is
// what to fix, and they are tried again at the next sync.
func (s *Source) buildAndApply(ctx context.Context, in Inputs, now time.Time) attempt {
	var prev *attempt
	var recorded []string
	running, retried := s.runningConfig(), false
	for round := 0; ; round++ {
		a := s.attempt(ctx, in, now)
		if a.buildErr != nil && prev != nil {
			for _, id := range recorded {
				delete(s.linkFailed, id)
			}
			return *prev
		}
		failed := a.down
		if a.applyErr != nil {
			failed = failedLinks(a.applyErr)
		}
		if a.buildErr == nil && len(failed) > 0 && round < maxLeaveOutRounds {
			if recorded = s.leaveOut(failed, in.Accounts, now); len(recorded) > 0 {
				prev = &a
				continue
			}
		}
		if a.buildErr == nil && a.applyErr == nil {
			s.forgetStarted(a.cfg)
			if !retried && round < maxLeaveOutRounds && len(s.linkFailed) > 0 && linksClosed(running, a.cfg) {
				// This apply closed or moved links (an Account removed, or its port changed):
				// the port an Account left out waits for may be free now — the usual fix of a
				// port clash. Try them once more now rather than at their retry time: the
				// runtime starts added links before it closes old ones, so the apply that
				// freed the port could not give it to them.
				retried, running, recorded = true, a.cfg, nil
				for _, f := range s.linkFailed {
					f.retryAt = now
				}
				prev = &a
				continue
			}
		}
		return a
	}
}

// linksClosed reports whether going from the running config to cfg closes or moves a link:
// an account removed, or one whose link reconnects (options, plugin, relation…).
func linksClosed(running, cfg *config.Config) bool {
	if running == nil {
		return false
	}
	ch := config.Diff(running, cfg)
	return len(ch.Removed) > 0 || slices.ContainsFunc(ch.Changed, func(c config.AccountChange) bool { return c.Reconnect })
}

// maxLeaveOutRounds bounds the applies of one sync that leave out more Accounts whose links
// could not start: the links of one apply start together, so one more round is the rule, and
// one more after an apply that freed ports (buildAndApply).
const maxLeaveOutRounds = 4

// attempt is one build of the config and its apply.
type attempt struct {
	cfg      *config.Config // nil when buildErr
	problems []Problem      // objects left out
	buildErr error          // the Connector's own settings are unusable
	applyErr error          // the runtime refused cfg, or could not start with it
	// pending are the store settings of cfg that the running connector keeps until the
	// operator replaces this pod (keepStore).
	pending []string
	// down are the accounts of cfg, in force, whose link the apply reconnected and that could
	// not start again (connector.DownLinks).
	down map[string]error
}

func (s *Source) attempt(ctx context.Context, in Inputs, now time.Time) attempt {
	var left []Problem
	in.Accounts, left = s.withoutFailedLinks(in.Connector.Name, in.Accounts, now)
	cfg, problems, err := Build(in)
	problems = append(problems, left...)
	if err != nil {
		return attempt{problems: problems, buildErr: err}
	}
	cfg, pending := s.keepStore(cfg)
	a := attempt{cfg: cfg, problems: problems, pending: pending, applyErr: s.apply(ctx, cfg)}
	if d, ok := s.Runtime().(downLinks); ok && a.applyErr == nil {
		a.down = d.DownLinks()
	}
	return a
}

// downLinks is the connector's report of the accounts in force whose link a reload
// reconnected and that could not start again (connector.Connector.DownLinks).
type downLinks interface{ DownLinks() map[string]error }

// retryAfter is how soon a sync that built a config should run again (see sync).
func (s *Source) retryAfter(out attempt, transient bool, now time.Time) time.Duration {
	var retry []time.Duration
	switch {
	case out.applyErr != nil && s.Runtime() == nil:
		// Not started: the cause (a store away, a parent not answering) may pass, but each
		// try builds the whole connector and logs, so the tries space out.
		s.logFailure(now, slog.LevelError, "the connector cannot start; it tries again later", out.applyErr, "retryIn", s.startDelay)
		retry = append(retry, s.startDelay)
		s.startDelay = min(2*s.startDelay, s.opts.RetryRefused)
	case out.applyErr != nil: // the running connector refused it, perhaps for a passing reason
		s.logFailure(now, slog.LevelError, "configuration refused; the running config stays in force", out.applyErr,
			"retryIn", s.opts.RetryRefused)
		retry = append(retry, s.opts.RetryRefused)
	default:
		s.startDelay = retryInterval
		s.failure.Reset()
	}
	if transient {
		retry = append(retry, retryInterval)
	}
	if next, ok := s.nextLinkRetry(); ok {
		retry = append(retry, max(next.Sub(now), retryInterval))
	}
	if len(retry) == 0 {
		return 0
	}
	return slices.Min(retry)
}

// keeps says what stays in force after a failed sync.
func (s *Source) keeps() string {
	if s.Runtime() == nil {
		return "the connector has not started"
	}
	return "the running config stays in force"
}

// runningConfig is the config in force, nil before the connector started.
func (s *Source) runningConfig() *config.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running
}

// storeSettings are the settings of the store, which a running connector cannot change.
var storeSettings = []string{"store", "storePath", "storeConfig"}

// keepStore returns cfg with the running connector's store settings when cfg changes them, and
// the settings it kept. The operator rolls the pods on a store change (the store, its Redis
// URL Secret and its kind of workload are restart inputs), so this pod is about to be replaced
// by one that opens the new store; until then it keeps its store and applies the rest, rather
// than refusing the whole config and reporting a failure that is only a roll in progress.
func (s *Source) keepStore(cfg *config.Config) (*config.Config, []string) {
	running := s.runningConfig()
	if running == nil || s.Runtime() == nil {
		return cfg, nil
	}
	storeOf := func(c *config.Config) *config.Config {
		return &config.Config{Store: c.Store, StorePath: c.StorePath, StoreConfig: c.StoreConfig}
	}
	var pending []string
	for _, g := range config.Diff(storeOf(running), storeOf(cfg)).Globals {
		if slices.Contains(storeSettings, g) {
			pending = append(pending, g)
		}
	}
	if len(pending) == 0 {
		return cfg, nil
	}
	kept := *cfg
	kept.Store, kept.StorePath, kept.StoreConfig = running.Store, running.StorePath, running.StoreConfig
	return &kept, pending
}

// linkFailure is an Account left out because its link could not start (its port is taken, or
// one the pod may not bind). It is tried again at retryAt, at once when the Account changes,
// and after an apply that closed or moved other links (buildAndApply).
type linkFailure struct {
	uid        types.UID
	generation int64
	msg        string
	retryAt    time.Time
	trying     bool // retryAt had passed: the Account is in this sync's attempts again
}

// withoutFailedLinks returns accounts without those of connector whose link could not start
// and that are not due for another try, and the Problems that say why they are left out. It
// forgets the failures of Accounts that changed or are gone.
func (s *Source) withoutFailedLinks(connector string, accounts []ilpv1.Account, now time.Time) ([]ilpv1.Account, []Problem) {
	if len(s.linkFailed) == 0 {
		return accounts, nil
	}
	seen := make(map[string]bool, len(s.linkFailed))
	kept := make([]ilpv1.Account, 0, len(accounts))
	var left []Problem
	for i := range accounts {
		a := &accounts[i]
		if f, ok := s.linkFailed[a.Name]; ok && a.Spec.ConnectorRef == connector {
			seen[a.Name] = true
			switch {
			case f.uid != a.UID || f.generation != a.Generation:
				delete(s.linkFailed, a.Name) // changed, perhaps fixed: tried at once
			case now.Before(f.retryAt):
				left = append(left, Problem{Kind: kindAccount, Name: a.Name, Message: f.msg})
				continue
			default:
				// Due: tried again. The next try is RetryRefused away whatever this one meets
				// (another Account's failure, a refusal of the whole config): a failure left
				// due would make every later sync run again at once.
				f.trying, f.retryAt = true, now.Add(s.opts.RetryRefused)
			}
		}
		kept = append(kept, *a)
	}
	for name := range s.linkFailed {
		if !seen[name] {
			delete(s.linkFailed, name)
		}
	}
	return kept, left
}

// accountErrors is what the runtime's errors.As finds when only the links of some accounts
// could not start (connector.LinkStartError), without this package importing the connector.
type accountErrors interface{ AccountErrors() map[string]error }

// failedLinks are the accounts whose links err says could not start (and nothing else went
// wrong), nil if it does not say so.
func failedLinks(err error) map[string]error {
	var ae accountErrors
	if !errors.As(err, &ae) {
		return nil
	}
	return ae.AccountErrors()
}

// leaveOut records the Accounts whose links could not start (failed), to be left out until
// they change or RetryRefused has passed. It returns those the attempt had not already left
// out: only then is another attempt worth it.
func (s *Source) leaveOut(failed map[string]error, accounts []ilpv1.Account, now time.Time) []string {
	byName := make(map[string]*ilpv1.Account, len(failed))
	for i := range accounts {
		if _, ok := failed[accounts[i].Name]; ok {
			byName[accounts[i].Name] = &accounts[i]
		}
	}
	if s.linkFailed == nil {
		s.linkFailed = map[string]*linkFailure{}
	}
	var recorded []string
	for id, e := range failed {
		a, ok := byName[id]
		if f := s.linkFailed[id]; !ok || (f != nil && !f.trying && now.Before(f.retryAt) && f.uid == a.UID && f.generation == a.Generation) {
			continue // not an Account, or already left out: leaving it out again changes nothing
		}
		s.linkFailed[id] = &linkFailure{uid: a.UID, generation: a.Generation, retryAt: now.Add(s.opts.RetryRefused),
			msg: fmt.Sprintf("its link cannot start (tried again every %s): %v", s.opts.RetryRefused, e)}
		recorded = append(recorded, id)
	}
	return recorded
}

// forgetStarted forgets the link failures of the Accounts in force in cfg: their links started.
func (s *Source) forgetStarted(cfg *config.Config) {
	for name := range s.linkFailed {
		if _, ok := cfg.Accounts[name]; ok {
			delete(s.linkFailed, name)
		}
	}
}

// nextLinkRetry is the earliest retry of an Account left out for its link, if any.
func (s *Source) nextLinkRetry() (time.Time, bool) {
	var next time.Time
	for _, f := range s.linkFailed {
		if next.IsZero() || f.retryAt.Before(next) {
			next = f.retryAt
		}
	}
	return next, !next.IsZero()
}

// repeatLogEvery is how often a failure that every retry meets again is logged again.
const repeatLogEvery = 5 * time.Minute

// logFailure logs a failed sync once, then only when it changes or now and then (s.failure).
// attrs say more without making it another failure (how soon it is tried again).
func (s *Source) logFailure(now time.Time, level slog.Level, msg string, err error, attrs ...any) {
	ok, repeats := s.failure.Pass(msg+"\x00"+err.Error(), now)
	if !ok {
		return
	}
	attrs = append([]any{"connector", s.opts.Connector, "error", err}, attrs...)
	if repeats > 0 {
		attrs = append(attrs, "repeatedSinceLastLog", repeats)
	}
	s.log.Log(context.Background(), level, msg, attrs...)
}

// logLeftOut logs the objects left out of the configuration, or kept in it with a problem
// (cfg holds them; nil when none was built), when that changes: each one newly left out or
// with a new problem, and each one back in.
func (s *Source) logLeftOut(cfg *config.Config, problems []Problem) {
	now := make(map[string]string, len(problems))
	inForce := map[string]bool{}
	for _, p := range problems {
		key := p.Kind + " " + p.Name
		inForce[key] = keptWithProblem(cfg, p)
		if now[key] != "" {
			now[key] += "; " + p.Message
			continue
		}
		now[key] = p.Message
	}
	for key, msg := range now {
		switch {
		case s.leftOut[key] == msg:
		case inForce[key]:
			s.log.Warn("object runs, not fully applied", "object", key, "problem", msg)
		default:
			s.log.Warn("object left out of the configuration", "object", key, "problem", msg)
		}
	}
	for key := range s.leftOut {
		if _, ok := now[key]; !ok {
			s.log.Info("object no longer left out of the configuration", "object", key)
		}
	}
	s.leftOut = now
}

// listCached lists the namespace's objects of each kind into lists, in order, stopping at the
// first failure. Build only reads the objects, so the cache's own copies do (10,000 Accounts
// would otherwise be deep-copied on every sync).
func (s *Source) listCached(ctx context.Context, lists ...client.ObjectList) error {
	for _, l := range lists {
		if err := s.cl.List(ctx, l, client.InNamespace(s.opts.Namespace), client.UnsafeDisableDeepCopy); err != nil {
			return err
		}
	}
	return nil
}

// retryIf is retryInterval if a sync met a passing failure, 0 otherwise.
func retryIf(passing bool) time.Duration {
	if passing {
		return retryInterval
	}
	return 0
}

// apply starts the runtime with the first config and applies the later ones.
func (s *Source) apply(ctx context.Context, cfg *config.Config) error {
	s.mu.Lock()
	rt := s.rt
	s.mu.Unlock()
	var err error
	if rt == nil {
		rt, err = s.opts.Start(ctx, cfg)
		if err != nil {
			return fmt.Errorf("starting the connector: %w", err)
		}
	} else if err = rt.Apply(ctx, cfg); err != nil {
		return err
	}
	s.mu.Lock()
	s.rt, s.running = rt, cfg
	s.mu.Unlock()
	return nil
}
