package btp

import (
	"errors"
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

// TestParseErrorDataBound: RFC 23 bounds an Error's data to 8192 bytes; a longer one is
// refused with an error saying so, not handed on.
func TestParseErrorDataBound(t *testing.T) {
	for _, tt := range []struct {
		size int
		ok   bool
	}{{0, true}, {maxErrorData, true}, {maxErrorData + 1, false}, {60000, false}} {
		var f Frame
		err := ParseFrame(errorFrameWire("NotAcceptedError", make([]byte, tt.size)), &f)
		switch {
		case tt.ok && err != nil:
			t.Errorf("data of %d bytes: %v", tt.size, err)
		case tt.ok && len(f.ErrorData) != tt.size:
			t.Errorf("data of %d bytes read as %d", tt.size, len(f.ErrorData))
		case !tt.ok && (!errors.Is(err, ErrErrorDataTooLarge) || !strings.Contains(err.Error(), "at most 8192")):
			t.Errorf("data of %d bytes: error %v; want ErrErrorDataTooLarge saying the bound", tt.size, err)
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
