package main

import (
	"io"
	"os"
	"runtime/debug"
	"strings"
	"testing"
	"testing/fstest"
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

func TestTuneGC(t *testing.T) {
	tests := []struct {
		name    string
		gogc    string // GOGC, when set
		set     bool
		runtime int // the GC percent the runtime started with (from GOGC when set)
		want    int
	}{
		{"GOGC unset: the packet default", "", false, 100, packetGCPercent},
		{"GOGC set by the user: kept", "50", true, 50, 50},
		{"GOGC=off set by the user: kept", "off", true, -1, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("GOGC", tt.gogc) // and restores it afterwards
			if !tt.set {
				os.Unsetenv("GOGC")
			}
			prev := debug.SetGCPercent(tt.runtime)
			defer debug.SetGCPercent(prev)
			defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1)) // tuneGC may set one from the cgroup
			tuneGC()
			if got := debug.SetGCPercent(prev); got != tt.want {
				t.Errorf("GC percent after tuneGC = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestTuneGCMemoryLimit(t *testing.T) {
	cgroup := fstest.MapFS{
		"proc/self/cgroup":         {Data: []byte("0::/\n")},
		"sys/fs/cgroup/memory.max": {Data: []byte("1000000000\n")},
	}
	const before = 123 << 20
	tests := []struct {
		name, env string
		set       bool
		want      int64
	}{
		{"no GOMEMLIMIT: 90 % of the cgroup's limit", "", false, 900000000},
		{"GOMEMLIMIT set by the user: kept", "2GiB", true, before},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("GOMEMLIMIT", tt.env)
			if !tt.set {
				os.Unsetenv("GOMEMLIMIT")
			}
			prev := debug.SetMemoryLimit(before)
			defer debug.SetMemoryLimit(prev)
			tuneGCFrom(cgroup)
			if got := debug.SetMemoryLimit(-1); got != tt.want {
				t.Errorf("memory limit after tuneGC = %d, want %d", got, tt.want)
			}
		})
	}
}
