package ilp

import (
	"encoding/hex"
	"testing"
)

func TestPeerCondition(t *testing.T) {
	const want = "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
	if got := hex.EncodeToString(PeerCondition[:]); got != want {
		t.Fatalf("PeerCondition = %s, want %s", got, want)
	}
	if PeerFulfillment != [32]byte{} {
		t.Fatal("PeerFulfillment is not zero")
	}
	// The RFC 38 text prints sha256("") instead; it must not be what we use.
	if hex.EncodeToString(PeerCondition[:]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Fatal("PeerCondition is sha256 of the empty string")
	}
}

func TestFulfillMatches(t *testing.T) {
	f := &Fulfill{Fulfillment: PeerFulfillment}
	if !f.Matches(PeerCondition) {
		t.Error("the zero fulfillment does not match the peer condition")
	}
	other := PeerCondition
	other[31] ^= 1
	if f.Matches(other) {
		t.Error("matched a wrong condition")
	}
	var pre [32]byte
	copy(pre[:], "a preimage of thirty-two bytes!!")
	if !(&Fulfill{Fulfillment: pre}).Matches(ConditionOf(pre)) {
		t.Error("ConditionOf does not agree with Matches")
	}
}
