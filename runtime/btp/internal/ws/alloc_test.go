package ws

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"runtime"
	"strconv"
	"testing"
	"testing/iotest"
)

// TestHeaderAloneCostsLittle: a peer that sends only a frame header claiming a large payload
// (and a few bytes of it) must not make the reader allocate the claimed length up front: each
// such connection would otherwise hold ~64 KB for a handful of bytes until its timeout.
func TestHeaderAloneCostsLittle(t *testing.T) {
	const (
		conns   = 32
		claimed = 60000
		limit   = 64 << 10
	)
	in := []byte{0x82, 0x80 | 126}
	in = binary.BigEndian.AppendUint16(in, claimed)
	in = append(in, testKey[:]...)
	in = append(in, make([]byte, 16)...) // then the peer goes quiet (EOF here)
	cs := make([]*Conn, conns)
	for i := range cs { // built before measuring: their bufio buffers are not the point
		pc := &pipeConn{Reader: bytes.NewReader(in)}
		cs[i] = newConn(pc, bufio.NewReader(pc), false)
		cs[i].SetReadLimit(limit)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, c := range cs {
		if _, _, err := c.Read(nil); err != io.ErrUnexpectedEOF {
			t.Fatalf("Read = %v, want io.ErrUnexpectedEOF", err)
		}
	}
	runtime.ReadMemStats(&after)
	// Generous: the bound is what arrived plus one read chunk, far below the claimed length.
	if per := (after.TotalAlloc - before.TotalAlloc) / conns; per > 16<<10 {
		t.Errorf("a header claiming %d bytes, followed by 16, allocated %d bytes per connection", claimed, per)
	}
}

// BenchmarkRead reads messages of a small packet's size and of a large one's through the
// server's 4 KiB read buffer: what readPayload's growth costs the packet path.
func BenchmarkRead(b *testing.B) {
	for _, size := range []int{200, 32 << 10} {
		frame := rawFrame(0x82, make([]byte, size), testKey)
		b.Run(byteSize(size), func(b *testing.B) {
			r := bytes.NewReader(nil)
			pc := &pipeConn{Reader: r}
			br := bufio.NewReader(pc)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				r.Reset(frame)
				br.Reset(pc)
				c := Conn{br: br, readLimit: 64 << 10}
				if _, _, err := c.readMessage(nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func byteSize(n int) string {
	if n >= 1<<10 {
		return strconv.Itoa(n>>10) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}

// TestReadPayloadInPieces: a payload read as it arrives, in pieces of any size and across the
// read buffer's edge, comes out whole and in order.
func TestReadPayloadInPieces(t *testing.T) {
	readers := map[string]func(io.Reader) io.Reader{
		"at once":      func(r io.Reader) io.Reader { return r },
		"byte by byte": iotest.OneByteReader,
		"halves":       iotest.HalfReader,
	}
	for _, size := range []int{0, 1, 125, 4095, 4096, 4097, 30000, 64 << 10} {
		payload := make([]byte, size)
		for i := range payload {
			payload[i] = byte(i * 7)
		}
		frame := rawFrame(0x82, payload, testKey)
		for name, wrap := range readers {
			pc := &pipeConn{Reader: wrap(bytes.NewReader(frame))}
			c := newConn(pc, bufio.NewReader(pc), false)
			c.SetReadLimit(64 << 10)
			if _, got, err := c.Read(nil); err != nil || !bytes.Equal(got, payload) {
				t.Errorf("%d bytes %s: read %d bytes, %v; want them all", size, name, len(got), err)
			}
		}
	}
}
