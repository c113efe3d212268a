package suggest

import "testing"

func TestDidYouMean(t *testing.T) {
	known := []string{"reconnectIntervals", "reconnectInterval", "responseTimeout", "server"}
	tests := []struct{ in, want string }{
		{"reconectIntervals", ` (did you mean "reconnectIntervals"?)`},
		{"reconnectinterval", ` (did you mean "reconnectInterval"?)`}, // case is ignored
		{"sever", ` (did you mean "server"?)`},
		{"servers", ` (did you mean "server"?)`},
		{"listener", ""}, // nothing within two edits
		{"", ""},
	}
	for _, tt := range tests {
		if got := DidYouMean(tt.in, known); got != tt.want {
			t.Errorf("DidYouMean(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
