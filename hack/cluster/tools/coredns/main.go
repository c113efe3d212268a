// Command coredns is the cluster DNS of the local single-node cluster (hack/cluster): CoreDNS
// built from the Go module proxy with only the plugins the node needs, run by up.sh as a host
// process on the node address. The full CoreDNS main links every plugin (cloud DNS providers,
// tracing, ...), which costs minutes of build and hundreds of modules for nothing here.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	// The plugins of hack/cluster/up.sh's Corefile; each registers itself with dnsserver.
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

// The directive list keeps its full upstream order (plugins run in that order, whatever the
// Corefile says); only the registered plugins above can be used.
var _ = dnsserver.Directives

func main() { coremain.Run() }
