// Package memlimit finds the memory limit of the process's control group (cgroup v2 or v1), so
// that a connector run in a container without GOMEMLIMIT still gets a soft memory limit: with
// GOGC 400 its heap may grow to five times what is live, and without a soft limit the kernel
// would kill it at the container's limit instead of the collector working harder first.
package memlimit

import (
	"bufio"
	"bytes"
	"io/fs"
	"path"
	"strconv"
	"strings"
)

// unlimited is where cgroup v1 reports "no limit" (the largest page-aligned int64).
const unlimited = 1 << 62

// Of returns the lowest memory limit on the process's cgroup and its ancestors, read from fsys
// rooted at "/" (os.DirFS("/")); false when there is none or it cannot be read.
func Of(fsys fs.FS) (int64, bool) {
	data, err := fs.ReadFile(fsys, "proc/self/cgroup")
	if err != nil {
		return 0, false
	}
	v1, v2, hasV1, hasV2 := cgroupPaths(data)
	switch {
	case hasV1:
		return lowest(fsys, "sys/fs/cgroup/memory", v1, "memory.limit_in_bytes")
	case hasV2:
		return lowest(fsys, "sys/fs/cgroup", v2, "memory.max")
	}
	return 0, false
}

// cgroupPaths reads /proc/self/cgroup: "hierarchy-id:controllers:path" per line; the v1
// memory controller has "memory" among its controllers, the v2 hierarchy is "0::path".
func cgroupPaths(data []byte) (v1, v2 string, hasV1, hasV2 bool) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		id, rest, ok := strings.Cut(sc.Text(), ":")
		ctrls, p, ok2 := strings.Cut(rest, ":")
		switch {
		case !ok || !ok2:
		case id == "0" && ctrls == "":
			v2, hasV2 = p, true
		case containsField(ctrls, "memory"):
			v1, hasV1 = p, true
		}
	}
	return v1, v2, hasV1, hasV2
}

func containsField(list, name string) bool {
	for f := range strings.SplitSeq(list, ",") {
		if f == name {
			return true
		}
	}
	return false
}

// lowest walks from the cgroup up to the mount's root and returns the lowest limit it finds.
// Directories the mount does not show (a cgroup namespace puts the process at its root while
// /proc/self/cgroup may name a longer path) are skipped.
func lowest(fsys fs.FS, mount, cg, file string) (int64, bool) {
	var best int64
	found := false
	for p := path.Clean("/" + cg); ; p = path.Dir(p) {
		if v, ok := limitAt(fsys, path.Join(mount, p, file)); ok && (!found || v < best) {
			best, found = v, true
		}
		if p == "/" {
			return best, found
		}
	}
}

// limitAt reads one limit file: "max" (v2) or a value at or above unlimited (v1) is no limit.
func limitAt(fsys fs.FS, name string) (int64, bool) {
	data, err := fs.ReadFile(fsys, strings.TrimPrefix(name, "/"))
	if err != nil {
		return 0, false
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err != nil || v <= 0 || v >= unlimited {
		return 0, false
	}
	return v, true
}
