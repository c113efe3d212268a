package main

import (
	"fmt"
	"net"
	"strconv"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ilpfleet/ilpfleet/internal/testport"
)

// namespace is where the demo applies everything; the runtimes get it as POD_NAMESPACE.
const namespace = "default"

// Ports the samples fix: alice's BTP listener for bob and its child-wallet server. In a cluster
// each pod has its own network; here both runtimes share the host's, so these must be free.
var samplePorts = []int{7768, 7769}

// ports are the host ports the demo's local runtimes use besides samplePorts.
type ports struct {
	admin    map[string]int // admin API (probes, /metrics) of each Connector: 7780 in every pod
	sender   int            // alice-sender's BTP listener
	receiver int            // bob-receiver's BTP listener
}

// pickPorts checks that the samples' fixed ports are free and draws the others with testport.
func pickPorts() (*ports, error) {
	for _, p := range samplePorts {
		l, err := net.Listen("tcp", ":"+strconv.Itoa(p))
		if err != nil {
			return nil, fmt.Errorf("port %d, which config/samples give alice, is taken on this host: %w", p, err)
		}
		_ = l.Close()
	}
	var free [4]int
	for i := range free {
		p, err := testport.Free()
		if err != nil {
			return nil, err
		}
		for _, q := range free[:i] {
			if q == p {
				return nil, fmt.Errorf("port %d drawn twice; run the demo again", p)
			}
		}
		free[i] = p
	}
	return &ports{admin: map[string]int{"alice": free[0], "bob": free[1]}, sender: free[2], receiver: free[3]}, nil
}

// localize adapts a sample object to runtimes that run as local processes, sharing the host's
// network, instead of pods: it changes only what a pod network gives for free. The files in
// config/samples keep their in-cluster meaning.
func (p *ports) localize(obj *unstructured.Unstructured) {
	switch {
	case obj.GetKind() == "Connector":
		port := p.admin[obj.GetName()]
		if port == 0 {
			return
		}
		_ = unstructured.SetNestedField(obj.Object, int64(port), "spec", "listeners", "admin", "port")
		fmt.Printf("    local: Connector %s gets admin port %d (each pod has its own 7780; here both share the host)\n", obj.GetName(), port)
	case obj.GetKind() == "Account" && obj.GetName() == "bob-alice":
		const key = "btp+ws://alice:7768"
		url, _, _ := unstructured.NestedString(obj.Object, "spec", "link", "btpClient", "url")
		if url != key {
			return
		}
		local := "btp+ws://127.0.0.1:7768"
		_ = unstructured.SetNestedField(obj.Object, local, "spec", "link", "btpClient", "url")
		fmt.Printf("    local: Account bob-alice dials %s, not %s: \"alice\" is the\n"+
			"           in-cluster Service name, which only cluster DNS resolves; here alice is a local process\n", local, key)
	}
}
