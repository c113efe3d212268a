package main

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"

	"github.com/ilpfleet/ilpfleet/runtime/settlement/engine"
	"github.com/ilpfleet/ilpfleet/runtime/settlement/engine/mock"
)

func TestParseEngineFlags(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		env     map[string]string
		want    string // the parsed flags, printed; "" when an error is expected
		wantErr string
	}{
		{args: nil, want: "mock http://127.0.0.1:7771 127.0.0.1:3000 9 2 memory"},
		{args: nil, env: map[string]string{"CONNECTOR_URL": "http://conn-admin:7771", "ENGINE_LISTEN": "0.0.0.0:3000", "ENGINE_STORE": "redis://r:6379/0"},
			want: "mock http://conn-admin:7771 0.0.0.0:3000 9 2 redis://r:6379/0"},
		{args: []string{"--connector-url", "http://x:1", "--asset-scale", "6", "--mock-scale", "0"}, want: "mock http://x:1 127.0.0.1:3000 6 0 memory"},
		{args: []string{"--engine", "xrp"}, wantErr: "only built-in engine is mock"},
		{args: []string{"--asset-scale", "256"}, wantErr: "0 to 255"},
		{args: []string{"--store", "postgres://db"}, wantErr: "want memory or a redis:// URL"},
		{args: []string{"extra"}, wantErr: "unexpected arguments"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			f, err := parseEngineFlags(tc.args, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			got := strings.Join([]string{f.engine, f.connectorURL, f.listen, itoa(f.assetScale), itoa(f.mockScale), f.store}, " ")
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func itoa(v uint) string { return strconv.FormatUint(uint64(v), 10) }

// TestEngineConfigStarts: every --asset-scale the flags take, 0 included (whole units, which
// the framework takes only when said so), gives a Config the framework starts with.
func TestEngineConfigStarts(t *testing.T) {
	for _, args := range [][]string{nil, {"--asset-scale", "0"}, {"--asset-scale", "6"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			f, err := parseEngineFlags(append(args, "--listen", "127.0.0.1:0"), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			srv, err := engine.Start(context.Background(), mock.Connect(2), engine.NewMemory(), f.config(slog.New(slog.DiscardHandler)))
			if err != nil {
				t.Fatal(err)
			}
			if err := srv.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}
