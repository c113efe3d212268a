package connector

import (
	"context"
	"testing"
)

// TestPacketContextReused pins what BenchmarkForward's allocations rely on: packets that come
// with the same link context share one packet context, and a packet with another link
// context sees that context's values, including a context of a type that == cannot compare
// (no panic, no sharing).
func TestPacketContextReused(t *testing.T) {
	type key struct{}
	life, endLife := context.WithCancel(context.Background())
	defer endLife()
	a := &account{life: life}
	one := context.WithValue(context.Background(), key{}, "one")
	two := context.WithValue(context.Background(), key{}, "two")
	if a.packetContext(one) != a.packetContext(one) {
		t.Error("two packets with the same link context got different packet contexts")
	}
	if a.packetContext(context.Background()) != a.packetContext(context.Background()) {
		t.Error("context.Background (a comparable struct) is not reused")
	}
	for _, c := range []struct {
		link context.Context
		want any
	}{{one, "one"}, {two, "two"}, {one, "one"}, {incomparableCtx{two, nil}, "two"}, {incomparableCtx{one, nil}, "one"},
		{wrappedCtx{incomparableCtx{two, nil}}, "two"}, {wrappedCtx{incomparableCtx{two, nil}}, "two"}} {
		ctx := a.packetContext(c.link)
		if got := ctx.Value(key{}); got != c.want {
			t.Errorf("packet with link value %v sees %v", c.want, got)
		}
		if ctx.Done() != life.Done() {
			t.Error("a packet context is not in the account's life")
		}
	}
}

// incomparableCtx panics when compared with == to another of its type.
type incomparableCtx struct {
	context.Context
	_ func()
}

// wrappedCtx is comparable as a type, but its comparison panics when it holds an
// incomparableCtx.
type wrappedCtx struct{ context.Context }
