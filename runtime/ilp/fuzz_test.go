package ilp

import (
	"bytes"
	"errors"
	"regexp"
	"testing"
)

// Seeds live in testdata/fuzz/<Target>/ (the vectors and malformed shapes); the vector files are
// added here too so that a new vector is fuzzed without regenerating the corpus.

func FuzzParsePrepare(f *testing.F) {
	f.Add(loadHex(f, "ilpjs_prepare"))
	f.Add(loadHex(f, "rs_prepare"))
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		p, err := ParsePrepare(b)
		if !bytes.Equal(in, b) {
			t.Fatal("ParsePrepare modified its input")
		}
		if err != nil {
			if p != nil {
				t.Fatal("a packet and an error")
			}
			return
		}
		enc, err := p.MarshalBinary()
		if err != nil {
			t.Fatalf("a parsed Prepare does not encode: %v", err)
		}
		p2, err := ParsePrepare(enc)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if p2.Amount != p.Amount || !p2.ExpiresAt.Equal(p.ExpiresAt) || p2.ExecutionCondition != p.ExecutionCondition ||
			p2.Destination != p.Destination || !bytes.Equal(p2.Data, p.Data) {
			t.Fatalf("round trip changed the packet:\n%+v\n%+v", p, p2)
		}
		if enc2, _ := p2.MarshalBinary(); !bytes.Equal(enc, enc2) {
			t.Fatal("encoding is not stable")
		}
		if len(enc) > len(b) {
			t.Fatalf("canonical form (%d bytes) is longer than the input (%d)", len(enc), len(b))
		}
		if err := SetPrepareAmount(b, p.Amount+1); err != nil {
			t.Fatalf("SetPrepareAmount on a valid Prepare: %v", err)
		}
		if q, err := ParsePrepare(b); err != nil || q.Amount != p.Amount+1 {
			t.Fatalf("after SetPrepareAmount: %v", err)
		}
	})
}

func FuzzParseResponse(f *testing.F) {
	for _, name := range []string{"ilpjs_fulfill", "ilpjs_reject", "rs_fulfill", "rs_reject"} {
		f.Add(loadHex(f, name))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ful, rej, err := ParseResponse(b)
		switch {
		case err != nil:
			if ful != nil || rej != nil {
				t.Fatal("a packet and an error")
			}
		case ful != nil && rej == nil:
			checkFulfillRoundTrip(t, ful)
		case rej != nil && ful == nil:
			checkRejectRoundTrip(t, rej)
		default:
			t.Fatalf("ParseResponse returned %v and %v", ful, rej)
		}
	})
}

func checkFulfillRoundTrip(t *testing.T, f *Fulfill) {
	enc, err := f.MarshalBinary()
	if err != nil {
		t.Fatalf("a parsed Fulfill does not encode: %v", err)
	}
	f2, _, err := ParseResponse(enc)
	if err != nil || f2 == nil || f2.Fulfillment != f.Fulfillment || !bytes.Equal(f2.Data, f.Data) {
		t.Fatalf("round trip: %+v %+v %v", f, f2, err)
	}
}

func checkRejectRoundTrip(t *testing.T, r *Reject) {
	enc, err := r.MarshalBinary()
	if r.TriggeredBy == "" {
		// Read for compatibility with JS, never written.
		if !errors.Is(err, ErrEmptyTriggeredBy) {
			t.Fatalf("empty triggeredBy encoded: %v", err)
		}
		return
	}
	if err != nil {
		t.Fatalf("a parsed Reject does not encode: %v", err)
	}
	_, r2, err := ParseResponse(enc)
	if err != nil || r2 == nil || r2.Code != r.Code || r2.TriggeredBy != r.TriggeredBy || r2.Message != r.Message || !bytes.Equal(r2.Data, r.Data) {
		t.Fatalf("round trip: %+v %+v %v", r, r2, err)
	}
}

// The RFC 15 regex, as a reference for the hand-written scanner.
var addressRegexp = regexp.MustCompile(`^(g|private|example|peer|self|test[1-3]?|local)([.][a-zA-Z0-9_~-]+)+$`)

func FuzzAddress(f *testing.F) {
	for _, s := range []string{"g.alice", "test1.x.y", "peer.config", "g..a", "g.", "G.a", "test4.a", "g.a\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := ValidateAddress(s)
		want := addressRegexp.MatchString(s) && len(s) <= MaxAddressSize
		if (err == nil) != want {
			t.Fatalf("ValidateAddress(%q) = %v, the RFC regex says valid=%v", s, err, want)
		}
		a := Address(s)
		_ = CheckNetwork(a, EnvTest)
		_ = CheckNetwork(a, EnvProduction)
		if err != nil {
			return
		}
		if !validScheme(a.Scheme()) || !a.HasPrefix(a) || !a.HasPrefix(Address(a.Scheme())) || a.HasPrefix(a+"x") {
			t.Fatalf("prefix or scheme inconsistent for %q", s)
		}
		enc, err := (&Prepare{Destination: a, ExpiresAt: testExpiry}).MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if p, err := ParsePrepare(enc); err != nil || p.Destination != a {
			t.Fatalf("destination %q did not survive a round trip: %v", s, err)
		}
	})
}
