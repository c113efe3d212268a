package interop

import "syscall"

// sysProcAttr puts a child in its own process group, so that cleanup can stop it and every
// process it started, and asks Linux to kill it if the test binary dies without cleaning up.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
