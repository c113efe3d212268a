package ilp

import (
	"encoding/binary"
	"fmt"
)

// amountTooLargeSize is the size of F08 data: receivedAmount UInt64 || maximumAmount UInt64
// (RFC 27, asn1/InterledgerErrorData.asn).
const amountTooLargeSize = 16

// AmountTooLargeData is the data of an F08 Amount Too Large reject: the amount the connector
// received and the maximum it accepts, both in the units of the packet that was refused.
func AmountTooLargeData(received, maximum uint64) []byte {
	b := make([]byte, 0, amountTooLargeSize)
	return AppendUint64(AppendUint64(b, received), maximum)
}

// ParseAmountTooLargeData reads F08 data. Bytes after the 16 it needs are ignored (RFC 30
// extensibility).
func ParseAmountTooLargeData(b []byte) (received, maximum uint64, err error) {
	if len(b) < amountTooLargeSize {
		return 0, 0, fmt.Errorf("ilp: F08 data is %d bytes, want %d (receivedAmount, maximumAmount)", len(b), amountTooLargeSize)
	}
	return binary.BigEndian.Uint64(b[0:8]), binary.BigEndian.Uint64(b[8:16]), nil
}
