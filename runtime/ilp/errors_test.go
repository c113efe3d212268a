package ilp

import (
	"errors"
	"testing"
)

func TestErrorCodes(t *testing.T) {
	tests := []struct {
		code  ErrorCode
		name  string
		valid bool
	}{
		{CodeUnreachable, "Unreachable", true},
		{CodeInsufficientLiquidity, "Insufficient Liquidity", true},
		{CodeTransferTimedOut, "Transfer Timed Out", true},
		{"F42", "Unknown Error", true},
		{"X00", "Unknown Error", false},
		{"F0", "Unknown Error", false},
	}
	for _, tt := range tests {
		if got := tt.code.Name(); got != tt.name {
			t.Errorf("%q.Name() = %q, want %q", tt.code, got, tt.name)
		}
		if got := tt.code.Valid(); got != tt.valid {
			t.Errorf("%q.Valid() = %v", tt.code, got)
		}
	}
}

func TestRejectError(t *testing.T) {
	var err error = Rejectf(CodeUnreachable, "g.conn", "no route to %s", "g.bob")
	if got, want := err.Error(), "F02 Unreachable: no route to g.bob"; got != want {
		t.Fatalf("%q, want %q", got, want)
	}
	if Address("g.bob").Validate() != nil || !errors.Is(Address("x").Validate(), ErrInvalidAddress) {
		t.Fatal("Address.Validate disagrees with ValidateAddress")
	}
}
