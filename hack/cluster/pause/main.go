// Command pause is the sandbox ("pause") container of the local cluster (hack/cluster): it holds
// a pod's namespaces open and does nothing else. As PID 1 of the sandbox it reaps any orphans
// and exits on SIGINT or SIGTERM. Built static and packed by hack/cluster/image.sh, so the node
// needs no registry for its sandbox image.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			return
		}
		reap()
	}
}

// reap collects every exited child so that none stays a zombie; bounded by the number of
// children that have exited.
func reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
