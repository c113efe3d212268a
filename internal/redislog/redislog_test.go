package redislog

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ilpfleet/ilpfleet/internal/testlog"
)

// TestLibraryLogsAreStructured: the client library's own message about a pool that cannot
// dial reaches the structured logger as a JSON line.
func TestLibraryLogsAreStructured(t *testing.T) {
	var buf testlog.Buffer
	Use(slog.New(slog.NewJSONHandler(&buf, nil)))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: dials are refused
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 8 { // bounded: the pool logs once it has failed to dial several times
		_ = c.Ping(ctx).Err()
		if strings.Contains(buf.String(), "redis client") {
			break
		}
	}
	var line map[string]any
	first, _, _ := strings.Cut(buf.String(), "\n")
	if err := json.Unmarshal([]byte(first), &line); err != nil || line["msg"] != "redis client" || line["level"] != "WARN" {
		t.Fatalf("log %q; want a JSON WARN line 'redis client' from the library", buf.String())
	}
}
