package btp

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// errorFrameWire encodes an Error frame by hand, so that its data may exceed what AppendFrame
// writes.
func errorFrameWire(name string, data []byte) []byte {
	var c []byte
	c = append(c, "F00"...)
	c = ilp.AppendVarString(c, name)
	c = appendGeneralizedTime(c, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	c = ilp.AppendVarOctetString(c, data)
	c = ilp.AppendVarUint(c, 0)
	b := append([]byte{TypeError}, 0, 0, 0, 7)
	return ilp.AppendVarOctetString(b, c)
}

// TestParseErrorDataBound: RFC 23 bounds an Error's data to 8192 bytes; a longer one (a peer
// that ignores the bound) is read cut to it, so that the Error's code still reaches the
// request it answers.
func TestParseErrorDataBound(t *testing.T) {
	for _, tt := range []struct{ size, want int }{{0, 0}, {maxErrorData, maxErrorData}, {maxErrorData + 1, maxErrorData}, {60000, maxErrorData}} {
		var f Frame
		err := ParseFrame(errorFrameWire("NotAcceptedError", make([]byte, tt.size)), &f)
		if err != nil || f.Code != "F00" || f.Name != "NotAcceptedError" || len(f.ErrorData) != tt.want {
			t.Errorf("data of %d bytes: %q %q, %d bytes of data, %v; want F00 NotAcceptedError with %d bytes", tt.size, f.Code, f.Name, len(f.ErrorData), err, tt.want)
		}
	}
}

// TestErrorTextCut: the text of a peer's BTP Error carries at most a bounded part of the
// name and data the peer chose, cut between characters and saying so.
func TestErrorTextCut(t *testing.T) {
	for _, tt := range []struct {
		name, data string
		want       string
	}{
		{"NotAcceptedError", "invalid auth_token", "btp: peer answered with error F00 NotAcceptedError: invalid auth_token"},
		{"N", strings.Repeat("é", 4000), "btp: peer answered with error F00 N: " + strings.Repeat("é", 128) + "… (cut, 8000 bytes in all)"},
		{strings.Repeat("n", 10000), "d", "btp: peer answered with error F00 " + strings.Repeat("n", 64) + "… (cut, 10000 bytes in all): d"},
	} {
		got := (&Error{Code: "F00", Name: tt.name, Data: []byte(tt.data)}).Error()
		if got != tt.want || !utf8.ValidString(got) {
			t.Errorf("Error() = %.300q (%d bytes), want %.300q", got, len(got), tt.want)
		}
	}
}
