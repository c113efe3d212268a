package loadgen

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"sync"

	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// magic starts the data of every packet the load generator sends, so that the receiver can
// tell its own packets from anything else a connector may route to it.
var magic = []byte("ilpfleet-loadgen")

// nonceSize is the length of the per-packet nonce that follows magic: the packet's sequence
// number. Uniqueness per run is all it needs; the secret is the run key.
const nonceSize = 8

// dataSize is the length of a load-generator packet's data.
var dataSize = len(magic) + nonceSize

// keyring derives the fulfillment of a packet from its nonce: HMAC-SHA256(run key, nonce).
// Only the sender and receiver of this run know the key, so the connector under test cannot
// fulfill packets itself, and the receiver needs no shared table of conditions.
type keyring struct {
	macs sync.Pool // of hash.Hash; HMAC state is not safe for concurrent use
}

func newKeyring(key []byte) *keyring {
	k := append([]byte(nil), key...)
	return &keyring{macs: sync.Pool{New: func() any { return hmac.New(sha256.New, k) }}}
}

// newRunKey draws a fresh random key for one run.
func newRunKey() ([]byte, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("draw the run key: %w", err)
	}
	return key, nil
}

// packetData writes magic ‖ seq into b (reused) and returns it.
func packetData(b []byte, seq uint64) []byte {
	b = append(b[:0], magic...)
	return binary.BigEndian.AppendUint64(b, seq)
}

// seqOf returns the sequence number of packet data written by packetData. ok is false when
// the data is not a load-generator packet.
func seqOf(data []byte) (seq uint64, ok bool) {
	if len(data) != dataSize || !bytes.HasPrefix(data, magic) {
		return 0, false
	}
	return binary.BigEndian.Uint64(data[len(magic):]), true
}

// fulfillment derives the fulfillment for packet data written by packetData (checked by the
// caller: seqOf).
func (k *keyring) fulfillment(data []byte) (f [ilp.FulfillmentSize]byte) {
	mac := k.macs.Get().(hash.Hash)
	mac.Reset()
	mac.Write(data[len(magic):])
	mac.Sum(f[:0])
	k.macs.Put(mac)
	return f
}

// maxPrecomputed bounds the packets of a phase whose fulfillment and condition are derived
// before the phase starts: 64 bytes each, 16 MiB at most. Packets beyond it (a run of more
// than 262,144 packets) derive both while measured, as the receiver does for any packet
// outside the table.
const maxPrecomputed = 1 << 18

// pair is the precomputed answer and condition of one packet. The receiver answers with a
// pointer to fulfill, which the link only encodes, so a precomputed answer costs no allocation.
type pair struct {
	fulfill   ilp.Fulfill
	condition [ilp.FulfillmentSize]byte
}

func newPair(f [ilp.FulfillmentSize]byte) pair {
	return pair{fulfill: ilp.Fulfill{Fulfillment: f}, condition: ilp.ConditionOf(f)}
}

// table holds the pairs of the packets with sequence numbers base, base+1, … of one phase.
// Precomputing takes the two HMACs and two SHA-256 of every packet out of the measured phase,
// where they would take CPU from the connector under test on a shared machine. The pairs are
// still those of keyring.fulfillment, so the connector learns a fulfillment only from the
// receiver's answer, and an answer for a packet outside the table is checked the same way.
type table struct {
	base  uint64
	pairs []pair
}

// precompute derives the pairs of min(n, maxPrecomputed) packets from seq base on.
func (k *keyring) precompute(base uint64, n int) *table {
	t := &table{base: base, pairs: make([]pair, min(n, maxPrecomputed))}
	data := make([]byte, 0, dataSize)
	for i := range t.pairs {
		data = packetData(data, base+uint64(i))
		t.pairs[i] = newPair(k.fulfillment(data))
	}
	return t
}

// lookup returns the pair of packet seq, when the table holds it.
func (t *table) lookup(seq uint64) (*pair, bool) {
	if t == nil || seq < t.base || seq-t.base >= uint64(len(t.pairs)) {
		return nil, false
	}
	return &t.pairs[seq-t.base], true
}

// pairOf returns the pair of packet data written by packetData. ok is false when the data is
// not a load-generator packet.
func (k *keyring) pairOf(t *table, data []byte) (*pair, bool) {
	seq, ok := seqOf(data)
	if !ok {
		return nil, false
	}
	return k.pairFor(t, seq, data), true
}

// pairFor returns the pair of packet seq, whose data is data: from t when it holds it, derived
// (and allocated) otherwise.
func (k *keyring) pairFor(t *table, seq uint64, data []byte) *pair {
	if p, ok := t.lookup(seq); ok {
		return p
	}
	p := newPair(k.fulfillment(data))
	return &p
}
