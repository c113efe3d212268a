//go:build unix

package tlsopt

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/testcert"
)

// TestFileNotRegular: a file option naming a FIFO (which no one writes), a device or a
// directory is refused at once, at load and when a running listener reads its files again,
// instead of blocking in open (and Apply, or a handshake, with it).
func TestFileNotRegular(t *testing.T) {
	ca := testcert.NewCA(t, "private CA")
	p := ca.Server(t, "127.0.0.1")
	fifo := filepath.Join(t.TempDir(), "tls.crt")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	dir, devNull := t.TempDir(), "/dev/null"
	key := string(p.KeyPEM)
	// within runs f, failing when it does not return within 5 s (and then unblocking a FIFO
	// open by opening its other end, so that the test ends).
	within := func(t *testing.T, f func() error) error {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- f() }()
		select {
		case err := <-done:
			return err
		case <-time.After(5 * time.Second):
			if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
				w.Close()
			}
			<-done
			t.Fatal("did not return within 5 s: blocked opening the file")
			return nil
		}
	}
	for _, tc := range []struct {
		name string
		load func() error
		want string
	}{
		{"certFile a FIFO, listening", func() error {
			_, err := (&ServerOptions{CertFile: &fifo, Key: &key}).NewServer("listener.tls")
			return err
		}, `listener.tls.certFile: cannot read "` + fifo + `": is not a regular file (a FIFO)`},
		{"caFile a FIFO, dialing", func() error { _, err := (&Options{CAFile: &fifo}).Config("tls"); return err },
			`tls.caFile: cannot read "` + fifo + `": is not a regular file (a FIFO)`},
		{"clientCaFile a device", func() error {
			_, err := (&ServerOptions{Cert: ptr(string(p.CertPEM)), Key: &key, ClientCAFile: &devNull}).NewServer("listener.tls")
			return err
		}, `listener.tls.clientCaFile: cannot read "/dev/null": is not a regular file (a device)`},
		{"keyFile a directory", func() error {
			_, err := (&ServerOptions{Cert: ptr(string(p.CertPEM)), KeyFile: &dir}).NewServer("listener.tls")
			return err
		}, `listener.tls.keyFile: cannot read "` + dir + `": is a directory, not a regular file`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := within(t, tc.load); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v\nwant it to contain %q", err, tc.want)
			}
		})
	}

	// A running listener whose certFile becomes a FIFO: the handshake goes on with the
	// previous certificate, and the ERROR says why.
	t.Run("certFile turns into a FIFO", func(t *testing.T) {
		certFile := testcert.WriteFile(t, "tls.crt", p.CertPEM)
		s, clock, buf := clockedServer(t, ServerOptions{CertFile: &certFile, Key: &key}, time.Second)
		if err := os.Rename(fifo, certFile); err != nil {
			t.Fatal(err)
		}
		fifo = certFile // for within's unblocking
		clock.Add(time.Minute)
		_ = within(t, func() error {
			cfg, err := s.Config("http/1.1").GetConfigForClient(nil)
			if err == nil && cfg.Certificates[0].Leaf.SerialNumber.Cmp(p.Cert.SerialNumber) != 0 {
				t.Error("another certificate in force")
			}
			return err
		})
		if out := buf.String(); !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "is not a regular file (a FIFO)") {
			t.Errorf("log %q; want an ERROR saying the file is a FIFO", out)
		}
	})
}
