package ilp

import "crypto/sha256"

// PeerFulfillment is the fulfillment of every peer protocol request (peer.config, peer.route.*,
// peer.settle): 32 zero bytes.
var PeerFulfillment [FulfillmentSize]byte

// PeerCondition is sha256(PeerFulfillment) =
// 66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925. RFC 38 prints the hash of
// the empty string instead; interledger-rs and the Java connector use this one, and so do we.
var PeerCondition = ConditionOf(PeerFulfillment)

// ConditionOf is the execution condition that fulfillment fulfills: its SHA-256.
func ConditionOf(fulfillment [FulfillmentSize]byte) [ConditionSize]byte {
	return sha256.Sum256(fulfillment[:])
}

// Matches reports whether f fulfills condition, that is sha256(f.Fulfillment) == condition.
// Both values are public once the Fulfill exists, so a constant-time comparison is not needed.
func (f *Fulfill) Matches(condition [ConditionSize]byte) bool {
	return ConditionOf(f.Fulfillment) == condition
}
