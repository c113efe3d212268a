package store

import (
	"context"
	"testing"
)

type testKey struct{}

func TestBeginPacketIsTheContext(t *testing.T) {
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), testKey{}, "v"))
	pctx := BeginPacket(parent)
	sc := scopeFrom(pctx)
	if sc == nil || scopeFrom(parent) != nil {
		t.Fatal("the packet scope is not on the packet's context only")
	}
	if pctx.Value(testKey{}) != "v" {
		t.Fatal("the packet's context lost its parent's values")
	}
	child, stop := context.WithCancel(pctx)
	defer stop()
	if scopeFrom(child) != sc {
		t.Fatal("a derived context does not carry the scope")
	}
	cancel()
	<-child.Done() // the parent's cancellation reaches contexts derived from the scope
	if sc.add("a", 1) != true || len(sc.end()) != 1 || sc.add("a", 1) {
		t.Fatal("scope bookkeeping")
	}
}
