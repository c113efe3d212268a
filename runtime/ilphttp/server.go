package ilphttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// Header names of RFC 35 and ilp-plugin-http.
const (
	headerCallbackURL = "Callback-Url"
	headerRequestID   = "Request-Id"
	headerPeerName    = "Ilp-Peer-Name"
	headerDestination = "Ilp-Destination"
	contentType       = "application/octet-stream"
)

// ServeHTTP answers the peer's requests: GET is a health check ("OK", like ilp-plugin-http),
// POST carries a Prepare (answered in the response, or by callback in async mode) or, in async
// mode, the reply to one of our Prepares.
func (l *Link) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "OK")
		return
	case http.MethodPost:
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		httpError(w, http.StatusMethodNotAllowed, "ILP-over-HTTP: POST an ILP packet")
		return
	}
	if !l.verify.verify(r.Header.Get("Authorization")) {
		l.log.Debug("ILP-over-HTTP request with a missing or wrong token", "remote", r.RemoteAddr)
		w.Header().Set("WWW-Authenticate", `Bearer realm="ilp"`)
		httpError(w, http.StatusUnauthorized, "ILP-over-HTTP: missing or invalid Authorization (expected Bearer <token> of this account)")
		return
	}
	if ct := r.Header.Get("Content-Type"); !acceptedType(ct) {
		httpError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("ILP-over-HTTP: Content-Type %q; send application/octet-stream", ct))
		return
	}
	body, status, msg := l.readBody(w, r)
	if status != 0 {
		httpError(w, status, msg)
		return
	}
	switch body[0] {
	case ilp.TypePrepare:
		l.servePrepare(w, r, body)
	case ilp.TypeFulfill, ilp.TypeReject:
		l.serveReply(w, r, body)
	default:
		httpError(w, http.StatusBadRequest, fmt.Sprintf("ILP-over-HTTP: body is not an ILP Prepare (type %d)", body[0]))
	}
}

// acceptedType is lenient like the deployed implementations: octet-stream, the deprecated
// application/ilp+octet-stream that ilp-plugin-http sends, or nothing.
func acceptedType(ct string) bool {
	if ct == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == contentType || mt == "application/ilp+octet-stream")
}

// readBody reads the whole body in one allocation when the length is announced, at most
// bodyLimit bytes. It returns an HTTP status and message on failure.
func (l *Link) readBody(w http.ResponseWriter, r *http.Request) ([]byte, int, string) {
	limit := l.bodyLimit()
	tooLarge := fmt.Sprintf("ILP-over-HTTP: body larger than %d bytes, more than an ILP packet can take", limit)
	if r.ContentLength > int64(limit) {
		return nil, http.StatusRequestEntityTooLarge, tooLarge
	}
	rd := http.MaxBytesReader(w, r.Body, int64(limit))
	var body []byte
	var err error
	if r.ContentLength > 0 {
		body = make([]byte, r.ContentLength)
		_, err = io.ReadFull(rd, body)
	} else {
		body, err = io.ReadAll(rd)
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, http.StatusRequestEntityTooLarge, tooLarge
	case err != nil:
		return nil, http.StatusBadRequest, "ILP-over-HTTP: cannot read the body: " + err.Error()
	case len(body) == 0:
		return nil, http.StatusBadRequest, "ILP-over-HTTP: empty body; POST an ILP Prepare"
	}
	return body, 0, ""
}

// bodyLimit is the largest body the server reads: a Prepare, or in async mode also a reply
// to one of our Prepares, which may be larger (see maxReplySize).
func (l *Link) bodyLimit() int {
	if l.mode == ModeAsync {
		return l.maxReply
	}
	return l.maxBody
}

// servePrepare handles a Prepare: asynchronously when this account speaks async RFC 35 and the
// peer asked for a callback, otherwise in the response, as the deprecated sync mode and every
// deployed implementation do.
func (l *Link) servePrepare(w http.ResponseWriter, r *http.Request, body []byte) {
	if len(body) > l.maxBody {
		httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("ILP-over-HTTP: Prepare larger than %d bytes, more than an ILP Prepare can take", l.maxBody))
		return
	}
	p, err := ilp.ParsePrepare(body)
	if err != nil {
		httpError(w, http.StatusBadRequest, "ILP-over-HTTP: invalid ILP Prepare: "+err.Error())
		return
	}
	if l.mode == ModeAsync {
		if cb, id := r.Header.Get(headerCallbackURL), r.Header.Get(headerRequestID); cb != "" && id != "" {
			l.acceptAsync(w, p, cb, id)
			return
		}
	}
	l.holdUntil(p.ExpiresAt)
	reply := l.handle(r.Context(), p)
	buf := getBuf()
	defer putBuf(buf)
	*buf = encodeReply((*buf)[:0], reply, l.self())
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(*buf)
}

// handle runs the handler and turns what it returns into a Fulfill or a Reject.
func (l *Link) handle(ctx context.Context, p *ilp.Prepare) any {
	f, err := l.handler(ctx, p)
	if err == nil && f != nil {
		return f
	}
	var rej *ilp.Reject
	if errors.As(err, &rej) {
		return rej
	}
	if err == nil {
		err = errors.New("handler returned no answer")
	}
	l.log.Debug("handler error", "error", err)
	return ilp.Rejectf(ilp.CodeInternalError, l.self(), "internal error handling the packet from account %s", l.opts.Account)
}

// encodeReply appends a Fulfill or Reject to b. A Reject that cannot be encoded (a peer-made
// one with an invalid field) is replaced by a T00 of ours, so the peer always gets an answer.
func encodeReply(b []byte, reply any, self ilp.Address) []byte {
	var out []byte
	var err error
	switch v := reply.(type) {
	case *ilp.Fulfill:
		out, err = v.AppendBinary(b)
	case *ilp.Reject:
		out, err = v.AppendBinary(b)
	}
	if err == nil && out != nil {
		return out
	}
	r := ilp.Rejectf(ilp.CodeInternalError, self, "cannot encode the answer: %v", err)
	out, _ = r.AppendBinary(b[:0])
	return out
}

// serveReply takes the async reply to one of our Prepares. Only the first reply for a
// Request-Id is used; later ones (retries) get 400 as RFC 35 says.
func (l *Link) serveReply(w http.ResponseWriter, r *http.Request, body []byte) {
	id := r.Header.Get(headerRequestID)
	if id == "" {
		httpError(w, http.StatusBadRequest, "ILP-over-HTTP: a Fulfill or Reject needs the Request-Id of its Prepare")
		return
	}
	v, ok := l.pending.LoadAndDelete(id)
	if !ok {
		httpError(w, http.StatusBadRequest, "ILP-over-HTTP: unknown or already answered Request-Id "+id)
		return
	}
	v.(chan []byte) <- body // buffered, and only the LoadAndDelete winner sends
	w.WriteHeader(http.StatusOK)
}

func httpError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg)
}

// Reply buffers: an encoded answer is written into the response writer's own buffer, so the
// encoding buffer can be reused at once.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) <= 64<<10 {
		bufPool.Put(b)
	}
}

// checkCallback accepts only a callback URL on origin, the origin of the peer's own URL
// (outgoing.url): the reply is POSTed with our credentials for the peer, so a callback
// elsewhere would hand them, and a request from inside our network, to whatever the peer
// names.
func checkCallback(s, origin string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("Callback-Url %q is not an absolute http(s) URL", s)
	}
	if o := originOf(s); u.User != nil || o == "" || o != origin {
		return fmt.Errorf("Callback-Url %q is refused: replies go only to the scheme, host and port this account sends its packets to (its outgoing.url), spelled in ASCII", s)
	}
	return nil
}

// originOf is scheme://host:port of an absolute URL, with the host in lower case and the
// scheme's default port made explicit, so that equal origins compare equal; "" when s is not
// an absolute http(s) URL or its host is not plain ASCII. Such a host is dialed in its IDNA
// (punycode) form while Unicode case folding maps some of its letters to ASCII ones
// ("peer-İlp" folds to "peer-ilp"): comparing it would let a callback pass for another host.
func originOf(s string) string {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || !isASCII(u.Host) {
		return ""
	}
	port := u.Port()
	switch {
	case port != "":
	case u.Scheme == "https":
		port = "443"
	default:
		port = "80"
	}
	return u.Scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
