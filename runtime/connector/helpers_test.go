package connector

import (
	"context"
	"crypto/sha256"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/testport"
	dto "github.com/prometheus/client_model/go"

	"github.com/ilpfleet/ilpfleet/runtime/config"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
	"github.com/ilpfleet/ilpfleet/runtime/link"
)

// memLink is an in-memory link: Send calls remote (the peer's answer), and inject plays the peer
// sending us a Prepare.
type memLink struct {
	mu        sync.Mutex
	h         ilp.Handler
	remote    ilp.Handler
	connected atomic.Bool
	closed    atomic.Bool
	broken    bool              // Start fails, as a server whose port is taken
	onStart   func(ilp.Handler) // the peer's first words, said inside Start once the link is up
}

func (l *memLink) Start(_ context.Context, h ilp.Handler) error {
	if l.broken {
		return errors.New("listen tcp 127.0.0.1:7005: bind: address already in use")
	}
	l.mu.Lock()
	l.h = h
	l.mu.Unlock()
	l.connected.Store(true)
	if l.onStart != nil {
		l.onStart(h)
	}
	return nil
}

func (l *memLink) Send(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
	if !l.connected.Load() {
		return nil, link.ErrNotConnected
	}
	l.mu.Lock()
	r := l.remote
	l.mu.Unlock()
	if r == nil {
		return nil, errors.New("memLink: no remote")
	}
	return r(ctx, p)
}

func (l *memLink) Connected() bool { return l.connected.Load() }

func (l *memLink) Close() error {
	l.closed.Store(true)
	l.connected.Store(false)
	return nil
}

func (l *memLink) setRemote(h ilp.Handler) {
	l.mu.Lock()
	l.remote = h
	l.mu.Unlock()
}

// inject delivers p as if the peer had sent it.
func (l *memLink) inject(ctx context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
	l.mu.Lock()
	h := l.h
	l.mu.Unlock()
	if h == nil {
		return nil, errors.New("memLink: not started")
	}
	return h(ctx, p)
}

// memLinks hands out one memLink per account id; a new link for an id replaces the old one.
type memLinks struct {
	mu      sync.Mutex
	links   map[string]*memLink
	remotes map[string]ilp.Handler // remote of new links, by account id
	broken  map[string]bool        // accounts whose link fails to start
	onStart map[string]func(ilp.Handler)
}

func (m *memLinks) setRemote(id string, h ilp.Handler) {
	m.mu.Lock()
	if m.remotes == nil {
		m.remotes = map[string]ilp.Handler{}
	}
	m.remotes[id] = h
	l := m.links[id]
	m.mu.Unlock()
	if l != nil {
		l.setRemote(h)
	}
}

func (m *memLinks) factory(id string, _ config.Account) (link.Link, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.links == nil {
		m.links = map[string]*memLink{}
	}
	l := &memLink{remote: m.remotes[id], broken: m.broken[id], onStart: m.onStart[id]}
	m.links[id] = l
	return l, nil
}

func (m *memLinks) get(id string) *memLink {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.links[id]
}

// fakeClock is a settable clock.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) Now() time.Time { return time.Unix(0, c.ns.Load()) }

var preimage = [32]byte{1, 2, 3, 4, 5, 6, 7, 8, 9}

func condition() [32]byte { return sha256.Sum256(preimage[:]) }

// fulfiller answers every Prepare with the known preimage, remembering the last Prepare.
type fulfiller struct {
	mu   sync.Mutex
	last ilp.Prepare
	n    atomic.Int64
}

func (f *fulfiller) handle(_ context.Context, p *ilp.Prepare) (*ilp.Fulfill, error) {
	if strings.HasPrefix(string(p.Destination), "peer.") {
		// Not a payment: the connector's CCP speaker talks to every peer.
		return nil, ilp.Rejectf(ilp.CodeUnreachable, "test.fake", "this fake peer speaks no peer protocols")
	}
	f.mu.Lock()
	f.last = *p
	f.last.Data = append([]byte(nil), p.Data...)
	f.mu.Unlock()
	f.n.Add(1)
	return &ilp.Fulfill{Fulfillment: preimage}, nil
}

func (f *fulfiller) lastPrepare() ilp.Prepare {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

// prepare builds a Prepare with the known condition, expiring in d.
func prepare(dest string, amount uint64, now time.Time, d time.Duration) *ilp.Prepare {
	return &ilp.Prepare{Amount: amount, ExpiresAt: now.Add(d), ExecutionCondition: condition(), Destination: ilp.Address(dest)}
}

// mustConfig parses a config document (YAML or JSON) or fails the test.
func mustConfig(t testing.TB, doc string) *config.Config {
	t.Helper()
	cfg, err := config.FromData([]byte(doc), "test")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

func freePort(t testing.TB) int { return testport.Get(t) }

func itoa(n int) string { return strconv.Itoa(n) }

// rejectCode returns the code of err as a Reject, or "" with the error text.
func rejectOf(t testing.TB, err error) *ilp.Reject {
	t.Helper()
	var r *ilp.Reject
	if !errors.As(err, &r) {
		t.Fatalf("want a Reject, got %v", err)
	}
	return r
}

// startMem builds and starts a connector over in-memory links.
func startMem(t testing.TB, doc string, clock *fakeClock) (*Connector, *memLinks) {
	t.Helper()
	ml := &memLinks{}
	opts := Options{newLink: ml.factory}
	if clock != nil {
		opts.Clock = clock
	}
	return start(t, doc, opts), ml
}

// start builds and starts a connector on the config doc, and closes it when the test ends.
func start(t testing.TB, doc string, opts Options) *Connector {
	t.Helper()
	c, err := New(mustConfig(t, doc), opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	})
	return c
}

// metricValue is the value of the series of metric name whose labels include want (a counter's
// or a gauge's), and whether there is one.
func metricValue(t testing.TB, c *Connector, name string, want map[string]string) (float64, bool) {
	t.Helper()
	m := findMetric(t, c, name, want)
	switch {
	case m == nil:
		return 0, false
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue(), true
	}
	return m.GetCounter().GetValue(), true
}

// findMetric is the first series of metric name whose labels include want; nil: none.
func findMetric(t testing.TB, c *Connector, name string, want map[string]string) *dto.Metric {
	t.Helper()
	mfs, err := c.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue series
				}
			}
			return m
		}
	}
	return nil
}
