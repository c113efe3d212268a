package memlimit

import (
	"testing"
	"testing/fstest"
)

func TestOf(t *testing.T) {
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	tests := []struct {
		name  string
		files fstest.MapFS
		want  int64 // 0: no limit
	}{
		{"v2, the container's own limit at the namespace root", fstest.MapFS{
			"proc/self/cgroup": file("0::/\n"), "sys/fs/cgroup/memory.max": file("268435456\n")}, 268435456},
		{"v2, no limit", fstest.MapFS{
			"proc/self/cgroup": file("0::/\n"), "sys/fs/cgroup/memory.max": file("max\n")}, 0},
		{"v2, a parent's lower limit wins", fstest.MapFS{
			"proc/self/cgroup":                           file("0::/kubepods/pod1/ctr\n"),
			"sys/fs/cgroup/kubepods/pod1/ctr/memory.max": file("536870912\n"),
			"sys/fs/cgroup/kubepods/pod1/memory.max":     file("268435456\n"),
			"sys/fs/cgroup/kubepods/memory.max":          file("max\n")}, 268435456},
		{"v2, a path the namespace hides", fstest.MapFS{
			"proc/self/cgroup": file("0::/../../other\n"), "sys/fs/cgroup/memory.max": file("1048576\n")}, 1048576},
		{"v1 memory controller", fstest.MapFS{
			"proc/self/cgroup": file("5:cpu,cpuacct:/x\n4:memory:/docker/abc\n0::/\n"),
			"sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": file("134217728\n")}, 134217728},
		{"v1, no limit (the largest page-aligned value)", fstest.MapFS{
			"proc/self/cgroup":                           file("4:memory:/\n"),
			"sys/fs/cgroup/memory/memory.limit_in_bytes": file("9223372036854771712\n")}, 0},
		{"no cgroup file", fstest.MapFS{}, 0},
		{"garbage", fstest.MapFS{
			"proc/self/cgroup": file("0::/\n"), "sys/fs/cgroup/memory.max": file("lots\n")}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Of(tt.files)
			if ok != (tt.want != 0) || got != tt.want {
				t.Fatalf("Of = %d, %v; want %d", got, ok, tt.want)
			}
		})
	}
}
