package btp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"reflect"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/testlog"
	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

func TestReconnectSchedule(t *testing.T) {
	s := time.Second
	tests := []struct {
		name      string
		intervals []time.Duration
		clear     time.Duration
		gaps      []time.Duration // time since the previous failure, at each failure (the first ignored)
		want      []time.Duration
	}{
		{"walks the list, the last repeats", []time.Duration{0, s, 2 * s}, 0,
			[]time.Duration{0, 0, s, 2 * s, 2 * s}, []time.Duration{0, s, 2 * s, 2 * s, 2 * s}},
		// JS's clear timer fires during a wait longer than it, so the next wait is the first again.
		{"a gap of clear starts over", []time.Duration{s, 20 * s}, 0,
			[]time.Duration{0, s, 20 * s, s}, []time.Duration{s, 20 * s, s, 20 * s}},
		{"a gap just under clear does not", []time.Duration{s, 2 * s, 3 * s}, 5 * s,
			[]time.Duration{0, 5*s - 1, 5*s - 1}, []time.Duration{s, 2 * s, 3 * s}},
		{"custom clear", []time.Duration{s, 2 * s}, 5 * s,
			[]time.Duration{0, s, 5 * s}, []time.Duration{s, 2 * s, s}},
		{"one interval", []time.Duration{3 * s}, 0, []time.Duration{0, 0, time.Hour}, []time.Duration{3 * s, 3 * s, 3 * s}},
	}
	for _, tt := range tests {
		sched := reconnectSchedule{intervals: tt.intervals, clear: tt.clear}
		now := time.Unix(1e9, 0)
		var got []time.Duration
		for _, g := range tt.gaps {
			now = now.Add(g)
			got = append(got, sched.next(now))
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: waits %v; want %v", tt.name, got, tt.want)
		}
	}
}

// refusingListener accepts TCP connections and closes them at once, so that every WebSocket
// handshake fails.
func refusingListener(t *testing.T) net.Addr {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr()
}

// TestClientObeysReconnectIntervals follows the client's reconnect loop on a fake clock: the
// waits it asks for and the dials between them.
func TestClientObeysReconnectIntervals(t *testing.T) {
	addr := refusingListener(t)
	var dials atomic.Int32
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, a)
	}}}
	opts, err := ParseOptions(PluginBTP, json.RawMessage(`{"server":"btp+ws://:t@`+addr.String()+`","reconnectIntervals":[1000,2000,3000]}`))
	if err != nil {
		t.Fatal(err)
	}
	o := opts.(*ClientOptions)
	o.HTTPClient, o.Common = hc, quiet()
	c, err := NewClient(*o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })

	const rounds = 5
	now := time.Unix(1e9, 0)
	var waits []time.Duration
	done := make(chan struct{})
	c.now = func() time.Time { return now }
	c.sleep = func(_ context.Context, d time.Duration) bool { // run's goroutine only
		waits = append(waits, d)
		now = now.Add(d)
		if len(waits) == rounds {
			close(done)
			return false // ends run
		}
		return true
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-done; cancel() }()
	if err := c.Start(ctx, echo); !errors.Is(err, context.Canceled) {
		t.Fatalf("Start = %v; want it cancelled (the peer refuses every connection)", err)
	}
	c.core.wg.Wait() // run has returned: waits is ours
	want := []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 3 * time.Second, 3 * time.Second}
	if !reflect.DeepEqual(waits, want) {
		t.Errorf("waits = %v; want %v", waits, want)
	}
	if got := dials.Load(); got != rounds {
		t.Errorf("dials = %d; want %d, one before each wait", got, rounds)
	}
}

func TestClientCredentialsFromOptions(t *testing.T) {
	srv := startServer(t, 0, echo, nil)
	c := startClient(t, "btp+ws://"+srv.Addr().String(), echo, func(o *ClientOptions) { o.Token = "s3cret" })
	if _, err := c.Send(context.Background(), prepare("test.x", "hi")); err != nil {
		t.Errorf("Send = %v", err)
	}
	if _, err := NewClient(ClientOptions{Server: "btp+ws://:a@x", Token: "b"}); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Errorf("NewClient with a token in the URL and in Token = %v; want an error", err)
	}
}

func TestAuthProtocols(t *testing.T) {
	text := func(n, v string) ProtocolData {
		return ProtocolData{Name: n, ContentType: ContentText, Data: []byte(v)}
	}
	auth := ProtocolData{Name: ProtocolAuth, ContentType: ContentOctetStream, Data: []byte{}}
	tests := []struct {
		flags []ProtocolData
		want  []ProtocolData
	}{
		{nil, []ProtocolData{auth, text("auth_username", "u"), text("auth_token", "t")}},
		{[]ProtocolData{text("x", "1")}, []ProtocolData{auth, text("auth_username", "u"), text("auth_token", "t"), text("x", "1")}},
		// As JS's Object.assign: a flag named like an entry replaces its value in place.
		{[]ProtocolData{text("auth_token", "other")}, []ProtocolData{auth, text("auth_username", "u"), text("auth_token", "other")}},
	}
	for _, tt := range tests {
		c, err := NewClient(ClientOptions{Server: "btp+ws://u:t@x", AuthFlags: tt.flags, Common: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.authProtocols(); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("flags %v: auth entries %v; want %v", tt.flags, got, tt.want)
		}
	}
}

// logRecords parses the JSON log lines written to buf.
func logRecords(t *testing.T, buf *testlog.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(buf.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func jsonLogger(buf *testlog.Buffer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(buf, nil)).With("account", "alice")
}

func TestIgnoredOptionsWarnOnceAtBuild(t *testing.T) {
	got := buildWarnings(t, func(plugin string) string {
		if plugin == PluginMiniAccounts {
			return `{"currencyScale":9,"debugHostIldcpInfo":{}}`
		}
		return `{"server":"btp+ws://a:b@peer","reconnectInterval":5,"reconnectIntervals":[1]}`
	})
	want := []string{"ilp-plugin-btp reconnectInterval", "ilp-plugin-mini-accounts currencyScale", "ilp-plugin-mini-accounts debugHostIldcpInfo"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("warned about %q; want %q", got, want)
	}
}

func TestUnknownOptionErrorNamesKnownKeys(t *testing.T) {
	_, err := ParseOptions(PluginBTP, json.RawMessage(`{"server":"btp+ws://peer","reconectIntervals":[1]}`))
	var u *UnknownOptionError
	if !errors.As(err, &u) || u.Key != "reconectIntervals" || !reflect.DeepEqual(u.Known, btpKeys) {
		t.Fatalf("error = %#v; want an *UnknownOptionError for reconectIntervals with the ilp-plugin-btp keys", err)
	}
}

// TestUnreachablePeerLoggedSparingly: a peer that refuses every connection is logged at its
// first failure and then once per retryLogEvery with the count, not at every attempt.
func TestUnreachablePeerLoggedSparingly(t *testing.T) {
	addr := refusingListener(t)
	var buf testlog.Buffer
	opts, err := ParseOptions(PluginBTP, json.RawMessage(`{"server":"btp+ws://:t@`+addr.String()+`","reconnectInterval":1000}`))
	if err != nil {
		t.Fatal(err)
	}
	o := opts.(*ClientOptions)
	o.Common = quiet()
	o.Logger = jsonLogger(&buf)
	c, err := NewClient(*o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })

	const rounds = 8
	now := time.Unix(1e9, 0)
	sleeps := 0
	done := make(chan struct{})
	c.now = func() time.Time { return now }
	c.sleep = func(_ context.Context, d time.Duration) bool { // run's goroutine only
		sleeps++
		now = now.Add(d)
		if sleeps == 4 { // the fifth attempt comes after retryLogEvery
			now = now.Add(retryLogEvery)
		}
		if sleeps == rounds {
			close(done)
			return false
		}
		return true
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-done; cancel() }()
	_ = c.Start(ctx, echo)
	c.core.wg.Wait()
	var attempts []float64
	for _, r := range logRecords(t, &buf) {
		if r["level"] != "WARN" || !strings.HasPrefix(r["msg"].(string), "btp: cannot connect to peer") {
			t.Errorf("unexpected log line %v", r)
			continue
		}
		attempts = append(attempts, r["failedAttempts"].(float64))
	}
	if want := []float64{1, 5}; !reflect.DeepEqual(attempts, want) {
		t.Errorf("logged at failed attempts %v; want %v (the first, then after retryLogEvery)", attempts, want)
	}
}

// TestChangedConnectFailureLoggedAtOnce: a failure held back as a repeat is one of the same
// kind; a peer that comes up and refuses our credentials, after refusing connections, is
// logged at once, and refusing connections again is logged at once too.
func TestChangedConnectFailureLoggedAtOnce(t *testing.T) {
	var buf testlog.Buffer
	c, err := NewClient(ClientOptions{Server: "btp+ws://:t@127.0.0.1:1", Common: Common{Logger: jsonLogger(&buf)}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1e9, 0)
	c.now = func() time.Time { return now }
	refused := func(local string) error {
		return fmt.Errorf("btp: dial ws://127.0.0.1:1: %w", &net.OpError{Op: "dial", Net: "tcp",
			Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, Source: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000 + len(local)},
			Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)})
	}
	authRefused := fmt.Errorf("btp: peer rejected the auth: %w", &Error{Code: "F00", Name: "NotAcceptedError", Data: []byte("invalid auth_token")})
	for _, err := range []error{refused("a"), refused("bb"), authRefused, authRefused, refused("ccc")} {
		now = now.Add(time.Second)
		c.logRetry(false, err, time.Second)
	}
	var logged []float64
	for _, r := range logRecords(t, &buf) {
		logged = append(logged, r["failedAttempts"].(float64))
	}
	if want := []float64{1, 3, 5}; !reflect.DeepEqual(logged, want) {
		t.Errorf("logged at failed attempts %v; want %v (the first refusal, the auth refusal, the refusal again)", logged, want)
	}
}

// buildWarnings builds a link of each plugin (btp, then mini-accounts) from the options JSON
// that optionsJSON gives, logging as account alice, and returns the WARNs of options without
// effect as "plugin option", checking that each names the account and why.
func buildWarnings(t *testing.T, optionsJSON func(plugin string) string) []string {
	t.Helper()
	var buf testlog.Buffer
	for _, plugin := range []string{PluginBTP, PluginMiniAccounts} {
		opts, err := ParseOptions(plugin, json.RawMessage(optionsJSON(plugin)))
		if err != nil {
			t.Fatal(err)
		}
		switch o := opts.(type) {
		case *ClientOptions:
			o.Common.Logger = jsonLogger(&buf)
		case *PeerServerOptions:
			o.Common.Logger = jsonLogger(&buf)
		case *ChildServerOptions:
			o.Common.Logger = jsonLogger(&buf)
			o.AccountAddress = func() ilp.Address { return "test.a" }
		}
		if _, err := New(opts); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, r := range logRecords(t, &buf) {
		if r["level"] != "WARN" || r["account"] != "alice" || r["why"] == "" {
			t.Errorf("record %v; want a WARN naming the account and why", r)
		}
		got = append(got, r["plugin"].(string)+" "+r["option"].(string))
	}
	return got
}
