package main

import (
	"io"
	"strconv"
	"strings"
	"testing"
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
