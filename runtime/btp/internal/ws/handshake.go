package ws

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
)

// acceptGUID is the GUID of RFC 6455 §1.3 that the server appends to the client's key.
const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// readBufferSize is the client's read buffer: one read(2) takes a batch of small frames.
const readBufferSize = 8 << 10

// acceptKey is Sec-WebSocket-Accept for a Sec-WebSocket-Key.
func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + acceptGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// Dial opens a WebSocket to a ws:// or wss:// URL with hc (its transport dials, and brings
// TLS for wss). ctx bounds the handshake only.
func Dial(ctx context.Context, rawURL string, hc *http.Client) (*Conn, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("ws: dial: %w", err)
	}
	switch u.Scheme {
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	default:
		return nil, fmt.Errorf("ws: dial: URL scheme must be ws or wss, got %q", u.Scheme)
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	if hc.Timeout > 0 { // a client Timeout would cut the connection, not just the handshake
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, hc.Timeout)
		defer cancel()
		c := *hc
		c.Timeout = 0
		hc = &c
	}
	var nonce [16]byte
	_, _ = rand.Read(nonce[:]) // never fails (crypto/rand)
	key := base64.StdEncoding.EncodeToString(nonce[:])
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("ws: dial: %w", err)
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", key)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("ws: dial: %w", err)
	}
	rwc, err := checkHandshake(resp, key)
	if err != nil {
		_ = resp.Body.Close()
		return nil, err
	}
	return newConn(rwc, bufio.NewReaderSize(rwc, readBufferSize), true), nil
}

// checkHandshake checks the server's answer (RFC 6455 §4.1) and returns the connection that
// net/http hands over after a 101.
func checkHandshake(resp *http.Response, key string) (io.ReadWriteCloser, error) {
	switch {
	case resp.StatusCode != http.StatusSwitchingProtocols:
		return nil, fmt.Errorf("ws: dial: the server answered %s, not 101 Switching Protocols", resp.Status)
	case !headerHasToken(resp.Header, "Upgrade", "websocket"):
		return nil, fmt.Errorf("ws: dial: Upgrade header is %q, want websocket", resp.Header.Get("Upgrade"))
	case !headerHasToken(resp.Header, "Connection", "upgrade"):
		return nil, fmt.Errorf("ws: dial: Connection header is %q, want Upgrade", resp.Header.Get("Connection"))
	case resp.Header.Get("Sec-WebSocket-Accept") != acceptKey(key):
		return nil, errors.New("ws: dial: Sec-WebSocket-Accept does not match the key")
	case resp.Header.Get("Sec-WebSocket-Extensions") != "":
		return nil, errors.New("ws: dial: the server chose an extension that was not offered")
	}
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		return nil, fmt.Errorf("ws: dial: the HTTP client's 101 body is not writable (%T)", resp.Body)
	}
	return rwc, nil
}

// headerHasToken reports whether a comma-separated header has token (ASCII case-insensitive).
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// AcceptOptions configure Accept.
type AcceptOptions struct {
	// OriginPatterns are the browser Origins allowed: path.Match patterns of the Origin's host
	// (e.g. "*.example.com"), or of the whole Origin when the pattern has "://". Matching
	// ignores case. Every other Origin is refused, the request's own host included (see
	// checkOrigin); requests without an Origin (not from a browser) are let through.
	OriginPatterns []string
	// InsecureSkipVerify accepts any Origin: for peers that authenticate in-band, not with
	// the browser's cookies.
	InsecureSkipVerify bool
}

// Accept answers a WebSocket upgrade request (RFC 6455 §4.2) and takes the connection over.
// On error it has answered with an HTTP error already.
func Accept(w http.ResponseWriter, r *http.Request, o AcceptOptions) (*Conn, error) {
	key, code, err := checkUpgrade(r)
	if err == nil && !o.InsecureSkipVerify {
		code, err = http.StatusForbidden, checkOrigin(r, o.OriginPatterns)
	}
	if err != nil {
		if code == http.StatusUpgradeRequired {
			w.Header().Set("Sec-WebSocket-Version", "13")
		}
		http.Error(w, err.Error(), code)
		return nil, err
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		err := errors.New("ws: accept: the HTTP server cannot hand the connection over")
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return nil, err
	}
	nc, brw, err := hj.Hijack()
	if err != nil {
		return nil, fmt.Errorf("ws: accept: %w", err)
	}
	_ = nc.SetDeadline(time.Time{}) // the HTTP server's deadlines are not the WebSocket's
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + acceptKey(key) + "\r\n\r\n"
	if _, err := nc.Write([]byte(resp)); err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("ws: accept: %w", err)
	}
	// brw.Reader may hold bytes the client sent right after its request: read through it.
	return newConn(nc, brw.Reader, false), nil
}

// checkUpgrade checks the client's request and returns its key, or the HTTP status to refuse.
func checkUpgrade(r *http.Request) (key string, status int, err error) {
	switch {
	case r.Method != http.MethodGet:
		return "", http.StatusMethodNotAllowed, fmt.Errorf("ws: accept: method %s, want GET", r.Method)
	case !headerHasToken(r.Header, "Connection", "upgrade"):
		return "", http.StatusUpgradeRequired, errors.New("ws: accept: Connection header has no upgrade token")
	case !headerHasToken(r.Header, "Upgrade", "websocket"):
		return "", http.StatusUpgradeRequired, errors.New("ws: accept: Upgrade header has no websocket token")
	case r.Header.Get("Sec-WebSocket-Version") != "13":
		return "", http.StatusUpgradeRequired, fmt.Errorf("ws: accept: Sec-WebSocket-Version %q, want 13", r.Header.Get("Sec-WebSocket-Version"))
	}
	key = r.Header.Get("Sec-WebSocket-Key")
	if b, err := base64.StdEncoding.DecodeString(key); err != nil || len(b) != 16 {
		return "", http.StatusBadRequest, fmt.Errorf("ws: accept: Sec-WebSocket-Key %q is not 16 bytes in base64", key)
	}
	return key, 0, nil
}

// checkOrigin lets through requests without an Origin (not from a browser) and those from an
// Origin a pattern allows. An Origin equal to the request's own host is not let through by
// itself: under DNS rebinding both are the attacker's name, pointed at a server on the
// victim's machine or network, so only the patterns can vouch for a browser page (as
// ilp-plugin-mini-accounts' allowedOrigins, empty by default).
func checkOrigin(r *http.Request, patterns []string) error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil {
		return fmt.Errorf("ws: accept: Origin %q is not a URL", origin)
	}
	for _, p := range patterns {
		target := u.Host
		if strings.Contains(p, "://") {
			target = origin
		}
		if ok, err := path.Match(strings.ToLower(p), strings.ToLower(target)); err != nil {
			return fmt.Errorf("ws: accept: bad origin pattern %q: %w", p, err)
		} else if ok {
			return nil
		}
	}
	return fmt.Errorf("ws: accept: Origin %q is not allowed", origin)
}
