package ilp

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// loadHex reads testdata/vectors/<name>.hex: "#" lines are comments (the source of the
// vector), the rest is hex split over lines.
func loadHex(t testing.TB, name string) []byte {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "vectors", name+".hex"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var sb strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line != "" && !strings.HasPrefix(line, "#") {
			sb.WriteString(line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return mustHex(t, sb.String())
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func mustB64(t testing.TB, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm.UTC()
}

func cond32(t testing.TB, b []byte) (c [32]byte) {
	t.Helper()
	if len(b) != 32 {
		t.Fatalf("condition of %d bytes", len(b))
	}
	copy(c[:], b)
	return c
}

// reencode checks that encoding v gives back exactly the wire bytes.
func reencode(t *testing.T, v interface{ MarshalBinary() ([]byte, error) }, want []byte) {
	t.Helper()
	got, err := v.MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("re-encoded bytes differ\n got %x\nwant %x", got, want)
	}
}

// rsData is the 257-byte data field shared by the three interledger-rs fixtures; its first
// and last bytes pin it without repeating the whole fixture here.
func checkRSData(t *testing.T, data []byte) {
	t.Helper()
	if len(data) != 257 || data[0] != 0x6c || data[1] != 0x99 || data[256] != 0xf0 {
		t.Fatalf("data: %d bytes %x…", len(data), data[:min(4, len(data))])
	}
}

func TestPrepareVectors(t *testing.T) {
	tests := []struct {
		file      string
		amount    uint64
		expiresAt string
		condition []byte
		dest      Address
		data      func(*testing.T, []byte)
	}{
		{
			file: "ilpjs_prepare", amount: 107, expiresAt: "2017-12-23T01:21:40.549Z",
			condition: mustB64(t, "dOETbcccnl8oO+yDRhy/EmHEAU9y1I+N1lRToLhOfeE="), dest: "example.alice",
			data: func(t *testing.T, d []byte) {
				if want := mustB64(t, "XbND/cQYmPbfQgIykTncJC3Q9VioEbRrKJGP2rN8bLA="); !bytes.Equal(d, want) {
					t.Fatalf("data %x, want %x", d, want)
				}
			},
		},
		{
			file: "rs_prepare", amount: 107, expiresAt: "2018-06-07T20:48:42.483Z",
			condition: mustHex(t, "117b434f1a54e9044f4f54923b2cff9e4a6d420ae281d5025d7bb040c4b4c04a"),
			dest:      "example.alice", data: checkRSData,
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b := loadHex(t, tt.file)
			p, err := ParsePrepare(b)
			if err != nil {
				t.Fatal(err)
			}
			if p.Amount != tt.amount || !p.ExpiresAt.Equal(mustTime(t, tt.expiresAt)) ||
				p.ExecutionCondition != cond32(t, tt.condition) || p.Destination != tt.dest {
				t.Fatalf("parsed %+v", p)
			}
			tt.data(t, p.Data)
			if &p.Data[0] != &b[len(b)-len(p.Data)] {
				t.Error("Data was copied; it must alias the input")
			}
			reencode(t, p, b)
			if f, r, err := ParseResponse(b); err == nil || f != nil || r != nil {
				t.Errorf("ParseResponse accepted a Prepare: %v %v %v", f, r, err)
			}
		})
	}
}

func TestFulfillVectors(t *testing.T) {
	tests := []struct {
		file        string
		fulfillment []byte
		data        func(*testing.T, []byte)
	}{
		{
			file: "ilpjs_fulfill", fulfillment: mustB64(t, "w4ZrSHSczxE7LhXCXSQH+/wUR2/nKWuxvxvNnm5BZlA="),
			data: func(t *testing.T, d []byte) {
				if want := mustB64(t, "Zz/r14ozso4cDbFMmgYlGgX6gx7U7ZHrzRUOcknC5gA="); !bytes.Equal(d, want) {
					t.Fatalf("data %x, want %x", d, want)
				}
			},
		},
		{
			file: "rs_fulfill", fulfillment: mustHex(t, "117b434f1a54e9044f4f54923b2cff9e4a6d420ae281d5025d7bb040c4b4c04a"),
			data: checkRSData,
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b := loadHex(t, tt.file)
			f, err := ParseFulfill(b)
			if err != nil {
				t.Fatal(err)
			}
			if f.Fulfillment != cond32(t, tt.fulfillment) {
				t.Fatalf("fulfillment %x", f.Fulfillment)
			}
			tt.data(t, f.Data)
			reencode(t, f, b)
			rf, rr, err := ParseResponse(b)
			if err != nil || rr != nil || rf == nil || rf.Fulfillment != f.Fulfillment {
				t.Fatalf("ParseResponse: %v %v %v", rf, rr, err)
			}
		})
	}
}

func TestRejectVectors(t *testing.T) {
	tests := []struct {
		file        string
		code        ErrorCode
		triggeredBy Address
		message     string
		data        func(*testing.T, []byte)
	}{
		{
			file: "ilpjs_reject", code: CodeInvalidPacket, triggeredBy: "example.us.bob",
			message: "missing destination. ledger=example.us.",
			data: func(t *testing.T, d []byte) {
				if want := mustB64(t, "AAAABBBB"); !bytes.Equal(d, want) {
					t.Fatalf("data %x, want %x", d, want)
				}
			},
		},
		{
			file: "rs_reject", code: CodeFinalApplicationError, triggeredBy: "example.connector",
			message: "Some error", data: checkRSData,
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b := loadHex(t, tt.file)
			r, err := ParseReject(b)
			if err != nil {
				t.Fatal(err)
			}
			if r.Code != tt.code || r.TriggeredBy != tt.triggeredBy || r.Message != tt.message {
				t.Fatalf("parsed %+v", r)
			}
			tt.data(t, r.Data)
			reencode(t, r, b)
			rf, rr, err := ParseResponse(b)
			if err != nil || rf != nil || rr == nil || rr.Message != tt.message {
				t.Fatalf("ParseResponse: %v %v %v", rf, rr, err)
			}
		})
	}
}

// The interledger-rs fixtures share one data field; the three files must agree on it.
func TestRSFixturesShareData(t *testing.T) {
	p, err := ParsePrepare(loadHex(t, "rs_prepare"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := ParseFulfill(loadHex(t, "rs_fulfill"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseReject(loadHex(t, "rs_reject"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p.Data, f.Data) || !bytes.Equal(p.Data, r.Data) {
		t.Fatal("data fields differ between the rs fixtures")
	}
}

// The annotated vector of ilp-protocol.md §1.2, byte for byte.
func TestPrepareAnnotatedVector(t *testing.T) {
	b := loadHex(t, "ilpjs_prepare")
	want := mustHex(t, "0c68"+"000000000000006b"+"3230313731323233303132313430353439")
	if !bytes.HasPrefix(b, want) {
		t.Fatalf("prefix %x", b[:len(want)])
	}
	if !bytes.Contains(b, mustHex(t, "0d6578616d706c652e616c696365")) {
		t.Fatal("destination not found")
	}
}
