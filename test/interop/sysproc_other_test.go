//go:build unix && !linux

package interop

import "syscall"

// sysProcAttr puts a child in its own process group, so that cleanup can stop it and every
// process it started.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
