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

// fulfillment derives the fulfillment for packet data written by packetData. ok is false when
// the data is not a load-generator packet.
func (k *keyring) fulfillment(data []byte) (f [ilp.FulfillmentSize]byte, ok bool) {
	if len(data) != dataSize || !bytes.HasPrefix(data, magic) {
		return f, false
	}
	mac := k.macs.Get().(hash.Hash)
	mac.Reset()
	mac.Write(data[len(magic):])
	mac.Sum(f[:0])
	k.macs.Put(mac)
	return f, true
}
