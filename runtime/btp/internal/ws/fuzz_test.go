package ws

import (
	"testing"
)

// FuzzRead feeds arbitrary bytes to the frame reader of both sides: it must never panic,
// return more than the read limit, or return a message after an error.
func FuzzRead(f *testing.F) {
	k := testKey
	for _, seed := range [][]byte{
		rawFrame(0x82, []byte("hello"), k),
		rawFrame(0x82, []byte("hello"), nil),
		append(rawFrame(0x02, []byte("he"), k), rawFrame(0x80, []byte("llo"), k)...),
		append(rawFrame(0x89, []byte("p"), k), rawFrame(0x81, []byte("é"), k)...),
		rawFrame(0x88, []byte{3, 0xe8, 'b'}, k),
		rawFrame(0x82, make([]byte, 300), k),
		{0x82, 0xff, 0, 0, 0, 0, 0, 0, 1, 0, 1, 2, 3, 4},
		{0xc2, 0x80},
	} {
		f.Add(seed)
	}
	const limit = 256
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, client := range []bool{false, true} {
			c, _ := reading(in, client)
			c.SetReadLimit(limit)
			var buf []byte
			for range len(in) + 1 { // every message takes at least one byte
				typ, m, err := c.Read(buf)
				if err != nil {
					break
				}
				if len(m) > limit || (typ != Text && typ != Binary) {
					t.Fatalf("message of %d bytes, type %d", len(m), typ)
				}
				buf = m
			}
		}
	})
}
