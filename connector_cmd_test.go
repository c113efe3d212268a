package main

import (
	"io"
	"strings"
	"testing"
)

func TestConnectorSourceFlags(t *testing.T) {
	tests := []struct {
		args      []string
		namespace string // POD_NAMESPACE
		source    string // resolved --source; "" when an error is expected
		err       string
	}{
		{nil, "", sourceEnv, ""},
		{[]string{"--config=c.yaml"}, "", sourceFile, ""},
		{[]string{"--source=kubernetes", "--connector=alice"}, "ns", sourceKubernetes, ""},
		{[]string{"--source=kubernetes", "--connector=alice"}, "", "", "needs POD_NAMESPACE"},
		{[]string{"--source=kubernetes"}, "ns", "", "needs --connector"},
		{[]string{"--source=kubernetes", "--connector=a", "--config=c.yaml"}, "ns", "", "--config cannot be used"},
		{[]string{"--source=env", "--config=c.yaml"}, "", "", "--config needs --source=file"},
		{[]string{"--source=file"}, "", "", "needs --config"},
		{[]string{"--connector=a"}, "", "", "--connector applies to --source=kubernetes only"},
		{[]string{"--source=etcd"}, "", "", `want env, file or kubernetes`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Setenv("POD_NAMESPACE", tt.namespace)
			f, err := parseConnectorFlags(tt.args, io.Discard)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || f.source != tt.source || (tt.source == sourceKubernetes && f.namespace != tt.namespace) {
				t.Fatalf("flags %+v, err %v", f, err)
			}
		})
	}
}
