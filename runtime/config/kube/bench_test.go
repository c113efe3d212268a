package kube

import (
	"strconv"
	"testing"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
	"github.com/ilpfleet/ilpfleet/runtime/config"
)

// BenchmarkBuild10k maps a Connector with 10,000 child Accounts to a validated config, and
// diffs it against the previous one: the CPU part of every sync (docs/benchmarks.md).
func BenchmarkBuild10k(b *testing.B) {
	accts := make([]ilpv1.Account, 10000)
	for i := range accts {
		accts[i] = account("acct-"+strconv.Itoa(i), i, nil)
	}
	in := Inputs{Connector: testConnector(), Accounts: accts, Secret: secrets(nil)}
	prev, _, err := Build(in)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		cfg, _, err := Build(in)
		if err != nil || len(cfg.Accounts) != 10000 {
			b.Fatal(err)
		}
		if ch := config.Diff(prev, cfg); !ch.Empty() {
			b.Fatal("diff of the same objects is not empty")
		}
	}
}
