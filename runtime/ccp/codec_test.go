package ccp

import (
	"encoding/hex"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tableID(t *testing.T, s string) TableID {
	var id TableID
	copy(id[:], unhex(t, s))
	return id
}

func auth(t *testing.T, s string) [32]byte {
	var a [32]byte
	copy(a[:], unhex(t, s))
	return a
}

// Vectors of ilp-protocol-ccp test/index.test.ts and interledger-rs interledger-ccp fixtures.
const (
	controlPrepareHex = "0c6c0000000000000000323031353036313630303031303030303066687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f292512706565722e726f7574652e636f6e74726f6c1f0170d1a134a0df4f47964f6e19e2ab379000000020010203666f6f03626172"
	simplePrepareHex  = "0c7e0000000000000000323031353036313630303031303030303066687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f292511706565722e726f7574652e7570646174653221e55f8eabcd4e979ab9bf0ff00a224c000000340000003400000034000075300d6578616d706c652e616c69636501000100"
	complexPrepareHex = "0c8201520000000000000000323031353036313630303031303030303066687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f292511706565722e726f7574652e757064617465820104bffbf6ad0ddc4d3ba1e5b4f0537365bd000000340000002e00000032000075300d6578616d706c652e616c69636501020f6578616d706c652e7072656669783101010f6578616d706c652e707265666978317a6c7d85867c46a2fabfad1afa7a4a5e229ce574fcce63f5edeedfc03f8468ea01000f6578616d706c652e707265666978320102126578616d706c652e636f6e6e6563746f72310f6578616d706c652e707265666978322b08e53fbcc17c5f1bd54ae0d9ad7ba39a5f9a7b126ca9b5c0945609a35324cc01025000000b68656c6c6f20776f726c64e0000104a0a0a0a001020f6578616d706c652e707265666978330f6578616d706c652e70726566697834"
)

func TestControlRequestVectors(t *testing.T) {
	cases := []struct {
		name string
		data string
		want ControlRequest
	}{
		{"sync with features", "01 70d1a134a0df4f47964f6e19e2ab3790 00000020 0102 03666f6f 03626172",
			ControlRequest{Mode: ModeSync, LastKnownRoutingTableID: tableID(t, "70d1a134a0df4f47964f6e19e2ab3790"), LastKnownEpoch: 32, Features: []string{"foo", "bar"}}},
		{"idle, zero table", "00 00000000000000000000000000000000 00000000 0100",
			ControlRequest{Mode: ModeIdle}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseControlRequest(unhex(t, c.data))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, c.want) {
				t.Errorf("parsed %+v, want %+v", *got, c.want)
			}
			enc, _ := c.want.AppendBinary(nil)
			if hex.EncodeToString(enc) != strings.ReplaceAll(c.data, " ", "") {
				t.Errorf("encoded %x, want %s", enc, c.data)
			}
		})
	}
	if got := tableID(t, "70d1a134a0df4f47964f6e19e2ab3790").String(); got != "70d1a134-a0df-4f47-964f-6e19e2ab3790" {
		t.Errorf("TableID.String = %s", got)
	}
}

func TestPrepareVectors(t *testing.T) {
	expires := time.Date(2015, 6, 16, 0, 1, 0, 0, time.UTC)
	complexWant := &UpdateRequest{
		RoutingTableID: tableID(t, "bffbf6ad0ddc4d3ba1e5b4f0537365bd"), CurrentEpochIndex: 52, FromEpochIndex: 46, ToEpochIndex: 50,
		HoldDownTime: 30000, Speaker: "example.alice",
		NewRoutes: []Route{
			{Prefix: "example.prefix1", Path: []string{"example.prefix1"}, Auth: auth(t, "7a6c7d85867c46a2fabfad1afa7a4a5e229ce574fcce63f5edeedfc03f8468ea")},
			{Prefix: "example.prefix2", Path: []string{"example.connector1", "example.prefix2"},
				Auth: auth(t, "2b08e53fbcc17c5f1bd54ae0d9ad7ba39a5f9a7b126ca9b5c0945609a35324cc"),
				Props: []Prop{{Meta: PropTransitive | PropUTF8, ID: 0, Value: []byte("hello world")},
					{Meta: PropOptional | PropTransitive | PropPartial, ID: 1, Value: unhex(t, "a0a0a0a0")}}},
		},
		WithdrawnRoutes: []string{"example.prefix3", "example.prefix4"},
	}
	cases := []struct {
		name    string
		prepare string
		build   func() *ilp.Prepare
		check   func(t *testing.T, data []byte)
	}{
		{"control", controlPrepareHex, func() *ilp.Prepare {
			return ControlPrepare(&ControlRequest{Mode: ModeSync, LastKnownRoutingTableID: tableID(t, "70d1a134a0df4f47964f6e19e2ab3790"),
				LastKnownEpoch: 32, Features: []string{"foo", "bar"}}, expires)
		}, func(t *testing.T, data []byte) {
			if _, err := ParseControlRequest(data); err != nil {
				t.Error(err)
			}
		}},
		{"simple update", simplePrepareHex, func() *ilp.Prepare {
			return UpdatePrepare(&UpdateRequest{RoutingTableID: tableID(t, "21e55f8eabcd4e979ab9bf0ff00a224c"), CurrentEpochIndex: 52,
				FromEpochIndex: 52, ToEpochIndex: 52, HoldDownTime: 30000, Speaker: "example.alice"}, expires)
		}, func(t *testing.T, data []byte) {
			u, err := ParseUpdateRequest(data)
			if err != nil || u.Speaker != "example.alice" || u.CurrentEpochIndex != 52 || len(u.NewRoutes)+len(u.WithdrawnRoutes) != 0 {
				t.Errorf("parsed %+v, %v", u, err)
			}
		}},
		{"complex update", complexPrepareHex, func() *ilp.Prepare { return UpdatePrepare(complexWant, expires) },
			func(t *testing.T, data []byte) {
				u, err := ParseUpdateRequest(data)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(u, complexWant) {
					t.Errorf("parsed\n%+v\nwant\n%+v", u, complexWant)
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw := unhex(t, c.prepare)
			p, err := ilp.ParsePrepare(raw)
			if err != nil {
				t.Fatal(err)
			}
			if p.ExecutionCondition != ilp.PeerCondition || p.Amount != 0 || !p.ExpiresAt.Equal(expires) {
				t.Errorf("envelope: %+v", p)
			}
			c.check(t, p.Data)
			enc, err := c.build().MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if hex.EncodeToString(enc) != c.prepare {
				t.Errorf("encoded\n%x\nwant\n%s", enc, c.prepare)
			}
			// Every truncation is an error, never a panic.
			for n := range len(p.Data) {
				if c.name == "control" {
					if _, err := ParseControlRequest(p.Data[:n]); err == nil {
						t.Errorf("control truncated to %d bytes parsed", n)
					}
				} else if _, err := ParseUpdateRequest(p.Data[:n]); err == nil {
					t.Errorf("update truncated to %d bytes parsed", n)
				}
			}
		})
	}
}

func TestParseRejectsForgedCounts(t *testing.T) {
	cases := []struct {
		name, data string
		control    bool
	}{
		{"control: 2^32 features", "01 70d1a134a0df4f47964f6e19e2ab3790 00000020 04ffffffff", true},
		{"control: mode 2", "02 70d1a134a0df4f47964f6e19e2ab3790 00000020 0100", true},
		{"update: huge route count", "21e55f8eabcd4e979ab9bf0ff00a224c 00000034 00000034 00000034 00007530 0d6578616d706c652e616c696365 08ffffffffffffffff", false},
		{"update: huge withdrawn count", "21e55f8eabcd4e979ab9bf0ff00a224c 00000034 00000034 00000034 00007530 0d6578616d706c652e616c696365 0100 047fffffff", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var err error
			if c.control {
				_, err = ParseControlRequest(unhex(t, c.data))
			} else {
				_, err = ParseUpdateRequest(unhex(t, c.data))
			}
			if err == nil {
				t.Error("parsed without error")
			}
		})
	}
}

func TestCheckRequest(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	good := ControlPrepare(&ControlRequest{Mode: ModeSync}, now.Add(time.Minute))
	wrongCond := *good
	wrongCond.ExecutionCondition[0] ^= 1
	expired := *good
	expired.ExpiresAt = now
	cases := []struct {
		name string
		p    *ilp.Prepare
		want ilp.ErrorCode
	}{
		{"ok", good, ""},
		{"wrong condition", &wrongCond, ilp.CodeWrongCondition},
		{"expired", &expired, ilp.CodeInsufficientTimeout},
	}
	for _, c := range cases {
		rej := checkRequest(c.p, now, "test.me")
		switch {
		case c.want == "" && rej != nil:
			t.Errorf("%s: rejected %v", c.name, rej)
		case c.want != "" && (rej == nil || rej.Code != c.want || rej.TriggeredBy != "test.me"):
			t.Errorf("%s: got %v, want %s by test.me", c.name, rej, c.want)
		}
	}
}
