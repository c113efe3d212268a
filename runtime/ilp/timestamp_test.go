package ilp

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// The valid, invalid and encoding lists of RFC 30 §Fixed-length Timestamps.
func TestParseTimestampRFC30Valid(t *testing.T) {
	tests := map[string]string{
		"20171224161432279": "2017-12-24T16:14:32.279Z",
		"20171224161432270": "2017-12-24T16:14:32.270Z",
		"20171224161432200": "2017-12-24T16:14:32.200Z",
		"20171224161432000": "2017-12-24T16:14:32.000Z",
		"20161231235959852": "2016-12-31T23:59:59.852Z", // RFC prints :60 here; a smeared leap second reads as :59
		"20171225000000000": "2017-12-25T00:00:00.000Z",
		"99991224161432279": "9999-12-24T16:14:32.279Z",
		"20000229120000000": "2000-02-29T12:00:00.000Z", // 2000 is a leap year
		"00000101000000000": "0000-01-01T00:00:00.000Z",
	}
	for in, want := range tests {
		got, err := ParseTimestamp([]byte(in))
		if err != nil {
			t.Errorf("ParseTimestamp(%s): %v", in, err)
			continue
		}
		if w := mustTime(t, want); !got.Equal(w) || got.Location() != time.UTC {
			t.Errorf("ParseTimestamp(%s) = %s, want %s", in, got, w)
		}
		if back := FormatTimestamp(got); back != in {
			t.Errorf("FormatTimestamp(%s) = %s, want %s", got, back, in)
		}
	}
}

func TestParseTimestampRFC30Invalid(t *testing.T) {
	tests := map[string]string{
		"20171224235312.431+0200": "got 23 bytes",
		"201712242153124318":      "got 18 bytes",
		"20171324161432200":       "month 13",
		"20171224230000000.":      "got 18 bytes",
		"20171224240000000":       "hour 24",
		"20171224215300":          "got 14 bytes",
		"2017122421531":           "got 13 bytes",
		"201712242153":            "got 12 bytes",
		"2017122421":              "got 10 bytes",
		"20161231235960852":       "second 60",
		"":                        "got 0 bytes",
		"20170012161432200":       "month 00",
		"20171200161432200":       "day 00 does not exist",
		"20171232161432200":       "day 32 does not exist",
		"20170229161432200":       "day 29 does not exist in 2017-02",
		"19000229161432200":       "day 29 does not exist in 1900-02",
		"20170431161432200":       "day 31 does not exist in 2017-04",
		"20171224166032200":       "minute 60",
		"2017122416143220Z":       "byte 16 is not a digit",
		"+0171224161432200":       "byte 0 is not a digit",
		"２017122416143220":        "got 18 bytes",
	}
	for in, fragment := range tests {
		_, err := ParseTimestamp([]byte(in))
		if err == nil {
			t.Errorf("ParseTimestamp(%q) accepted it", in)
			continue
		}
		if !errors.Is(err, ErrInvalidTimestamp) || !strings.Contains(err.Error(), fragment) {
			t.Errorf("ParseTimestamp(%q) = %q, want it to say %q", in, err, fragment)
		}
	}
}

func TestFormatTimestampRFC30(t *testing.T) {
	tests := []struct {
		in   time.Time
		want string
	}{
		{time.Date(2017, 12, 24, 16, 14, 32, 279_112_000, time.UTC), "20171224161432279"},
		{time.Date(2017, 12, 24, 16, 14, 32, 279_999_999, time.UTC), "20171224161432279"}, // truncated, never later
		{time.Date(2017, 12, 24, 16, 14, 32, 200_000_000, time.UTC), "20171224161432200"},
		{time.Date(2017, 12, 24, 16, 14, 0, 0, time.UTC), "20171224161400000"},
		{time.Date(2017, 12, 24, 0, 0, 0, 0, time.UTC), "20171224000000000"},
		{time.Date(2017, 12, 24, 24, 0, 0, 0, time.UTC), "20171225000000000"},
		{time.Date(2017, 12, 24, 18, 14, 32, 0, time.FixedZone("+0200", 7200)), "20171224161432000"},
		{time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), "99991231235959999"}, // clamped
		{time.Date(-5, 1, 1, 0, 0, 0, 0, time.UTC), "00000101000000000"},    // clamped
	}
	for _, tt := range tests {
		if got := FormatTimestamp(tt.in); got != tt.want {
			t.Errorf("FormatTimestamp(%s) = %s, want %s", tt.in, got, tt.want)
		}
		if got := string(AppendTimestamp([]byte("x"), tt.in)); got != "x"+tt.want {
			t.Errorf("AppendTimestamp = %s", got)
		}
	}
	// RFC 30 binary examples.
	for hexStr, want := range map[string]string{
		"32303137 31323234 31363134 33323237 39": "20171224161432279",
		"32303137 31323235 30303030 30303030 30": "20171225000000000",
	} {
		if got := string(mustHex(t, hexStr)); got != want {
			t.Errorf("%s is %q, want %q", hexStr, got, want)
		}
	}
}

// Like ILPJS test/date.spec.ts: random dates of years 1000-9999 survive format then parse.
func TestTimestampRoundTripRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		want := time.Date(1000+rng.IntN(9000), time.Month(1+rng.IntN(12)), 1+rng.IntN(28),
			rng.IntN(24), rng.IntN(60), rng.IntN(60), rng.IntN(1000)*int(time.Millisecond), time.UTC)
		got, err := ParseTimestamp([]byte(FormatTimestamp(want)))
		if err != nil || !got.Equal(want) {
			t.Fatalf("%s: got %s, %v", want, got, err)
		}
	}
}
