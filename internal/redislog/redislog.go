// Package redislog sends what the Redis client library logs by itself (a connection pool that
// cannot dial, say) to a process's structured logger: by default it writes raw text to stderr,
// which a JSON log pipeline cannot read, between the process's own JSON lines.
package redislog

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"
)

// Use makes log receive the Redis client library's messages, at WARN (it logs only what went
// wrong). The library has one logger per process: the last Use wins.
func Use(log *slog.Logger) {
	if log != nil {
		redis.SetLogger(logger{log})
	}
}

type logger struct{ log *slog.Logger }

func (l logger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis client", "detail", fmt.Sprintf(format, v...))
}
