package store

import (
	"context"
	"sync"
)

// Packet scopes: how a persistent store makes one packet's balance changes count as a unit.
//
// An ILP packet changes two balances through the Balances methods: the source account is raised
// at Prepare time (AddWithin) and refunded on Reject, and the next hop is reserved (Reserve) and
// then committed (Commit) or released. The raise on the source is not final when AddWithin
// returns: the packet may still be rejected, or the process may die before the sender sees a
// Fulfill. So a persistent store that wrote the raise as it happened would, after a crash,
// charge the sender for packets whose Fulfill the sender never saw.
//
// The connector therefore brackets the handling of every incoming Prepare with BeginPacket and
// EndPacket. Balance operations made with the packet's context (or one derived from it, which
// context.WithoutCancel keeps) are applied at once — limits see them, other packets see them —
// but are provisional: a store that implements PacketScoper makes them durable only in
// EndPacket, which the connector calls before it answers the packet. A packet that was
// rejected has a net change of zero (raise and refund, reserve and release) and costs no write
// at all. A process that dies before EndPacket leaves nothing of the packet behind: on restart
// the embedded store never wrote it, and the Redis store reverts this instance's provisional
// changes (see OpenRedis).
//
// Reservations (Pending) are never durable: after a restart no reserved packet can be
// fulfilled through the dead process, so every store starts its own reservations at zero.
//
// The irreducible window: a packet whose EndPacket returned but whose Fulfill had not been
// written to the sender's connection when the process died counts on both accounts while the
// sender never saw its Fulfill. It is as small as the time between the store's fsync (or Redis
// reply) and the link's write; no store can close it without an acknowledgement from the peer.

// PacketScoper is implemented by the stores that defer the durability of a packet's balance
// changes to the end of the packet (File, Redis). Memory does not need it.
type PacketScoper interface {
	// BeginPacket returns a context carrying a new, empty packet scope.
	BeginPacket(ctx context.Context) context.Context
	// EndPacket makes the balance changes made under ctx's scope final and durable, and
	// returns once they are. It is called once per BeginPacket, whatever the outcome.
	EndPacket(ctx context.Context) error
}

// scope records the committed-balance changes made on behalf of one packet: typically two
// entries, the source's raise (and refund) and the next hop's commit. It is also the context
// that carries it (the packet's context with one more value), so that a packet costs one
// allocation for both, and the room for two changes is part of it.
type scope struct {
	context.Context // the packet's context
	mu              sync.Mutex
	deltas          []scopeDelta
	room            [2]scopeDelta
	ended           bool
}

// Value returns the scope itself for scopeKey, and the packet context's values otherwise.
func (s *scope) Value(key any) any {
	if key == (scopeKey{}) {
		return s
	}
	return s.Context.Value(key)
}

type scopeDelta struct {
	account string
	delta   int64
}

type scopeKey struct{}

// BeginPacket returns ctx with a new packet scope; stores that implement PacketScoper use it.
func BeginPacket(ctx context.Context) context.Context {
	s := &scope{Context: ctx}
	s.deltas = s.room[:0]
	return s
}

// scopeFrom returns the packet scope of ctx, or nil.
func scopeFrom(ctx context.Context) *scope {
	s, _ := ctx.Value(scopeKey{}).(*scope)
	return s
}

// add records delta on account and reports whether the scope took it. It refuses once the
// scope ended: an operation after EndPacket (a late refund racing the end) must then be made
// durable by itself.
func (s *scope) add(account string, delta int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return false
	}
	for i := range s.deltas {
		if s.deltas[i].account == account {
			s.deltas[i].delta += delta
			return true
		}
	}
	s.deltas = append(s.deltas, scopeDelta{account, delta})
	return true
}

// end closes the scope and returns its changes; a second call returns nothing.
func (s *scope) end() []scopeDelta {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return nil
	}
	s.ended = true
	return s.deltas
}
