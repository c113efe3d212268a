package admin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
)

// JS defaults of CONNECTOR_ADMIN_API_HOST and CONNECTOR_ADMIN_API_PORT.
const (
	DefaultHost = "127.0.0.1"
	DefaultPort = 7780
)

// ShutdownTimeout bounds the graceful shutdown: requests still running after it are cut.
const ShutdownTimeout = 5 * time.Second

// Server is a running admin API listener.
type Server struct {
	addr string
	done chan struct{}
	err  error
}

// Serve listens on host:port (host "" is DefaultHost; port 0 picks a free port, for tests)
// and serves h until ctx is done, then shuts down gracefully. It returns once the port is
// bound, so a bind error (port taken, bad host) is returned here, not later.
func Serve(ctx context.Context, host string, port int, h http.Handler) (*Server, error) {
	if host == "" {
		host = DefaultHost
	}
	if port < 0 || port > 65535 {
		return nil, fmt.Errorf("admin: port %d out of range 0-65535", port)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("admin: listen: %w", err)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second, // a large /metrics scrape still fits
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	s := &Server{addr: ln.Addr().String(), done: make(chan struct{})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	go func() {
		defer close(s.done)
		select {
		case err := <-served: // failed on its own
			s.err = err
			return
		case <-ctx.Done():
		}
		sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			_ = srv.Close()
			s.err = fmt.Errorf("admin: shutdown: %w", err)
		}
		if err := <-served; !errors.Is(err, http.ErrServerClosed) && s.err == nil {
			s.err = err
		}
	}()
	return s, nil
}

// Addr is the bound address, host:port.
func (s *Server) Addr() string { return s.addr }

// Done is closed once the server has stopped.
func (s *Server) Done() <-chan struct{} { return s.done }

// Wait blocks until the server has stopped and returns why: nil after a graceful shutdown.
func (s *Server) Wait() error {
	<-s.done
	return s.err
}
