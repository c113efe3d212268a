package btp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ilpfleet/ilpfleet/runtime/ilp"
)

// wsOptsJSON is the options of plugin with wsOpts {"port":7768, extra}: listener.wsOpts of a
// BTP listener, or mini-accounts' wsOpts.
func wsOptsJSON(plugin, extra string) string {
	w := `{"port":7768` + extra + `}`
	if plugin == PluginBTP {
		return `{"listener":{"secret":"s3cret","wsOpts":` + w + `}}`
	}
	return `{"wsOpts":` + w + `}`
}

// wsParsed is what a server's options say of the ws server options.
func wsParsed(t *testing.T, o Options) (maxPayload int, path string, ignored []IgnoredOption) {
	t.Helper()
	switch o := o.(type) {
	case *PeerServerOptions:
		return o.MaxPayload, o.Path, o.Ignored
	case *ChildServerOptions:
		return o.MaxPayload, o.Path, o.Ignored
	}
	t.Fatalf("options %T are not a server's", o)
	return 0, "", nil
}

// TestParseWsServerOptions: every JSON-expressible option of the ws server that both plugins
// hand wsOpts to is honoured, accepted with a WARN, or accepted silently; those JSON cannot
// express are refused with why, and typos with a suggestion.
func TestParseWsServerOptions(t *testing.T) {
	tests := []struct {
		extra      string // keys of wsOpts beside port, each after a comma
		maxPayload int
		path       string
		warned     []string // options Ignored (logged at WARN), without the wsOpts prefix
		why        string   // substring of the first one's why
		err        string   // substring of the error, when one is expected
	}{
		{extra: ``},
		// Honoured.
		{extra: `,"maxPayload":1000`, maxPayload: 1000},
		{extra: `,"maxPayload":69632`, maxPayload: MaxFrameSize},
		{extra: `,"maxPayload":null`},
		{extra: `,"maxPayload":104857600`, warned: []string{"maxPayload"}, why: "above ilpfleet's bound of 69632 bytes"},
		{extra: `,"maxPayload":69633`, warned: []string{"maxPayload"}, why: "status 1009"},
		{extra: `,"maxPayload":0`, warned: []string{"maxPayload"}, why: "ws reads 0 as no limit"},
		{extra: `,"maxPayload":-1`, warned: []string{"maxPayload"}, why: "no limit"},
		{extra: `,"maxPayload":1.5`, err: "maxPayload"},
		{extra: `,"maxPayload":"1000"`, err: "maxPayload"},
		{extra: `,"path":"/btp"`, path: "/btp"},
		{extra: `,"path":"/"`, path: "/"},
		{extra: `,"path":""`},
		{extra: `,"path":null`},
		{extra: `,"path":"btp"`, err: `path "btp" must start with /`},
		{extra: `,"path":"/btp?x=1"`, err: "have no ?"},
		{extra: `,"path":7`, err: "path"},
		// Accepted with a WARN: ilpfleet does something else.
		{extra: `,"perMessageDeflate":true`, warned: []string{"perMessageDeflate"}, why: "never negotiates permessage-deflate"},
		{extra: `,"perMessageDeflate":{}`, warned: []string{"perMessageDeflate"}},
		{extra: `,"perMessageDeflate":{"threshold":1024,"serverNoContextTakeover":true}`, warned: []string{"perMessageDeflate"}},
		{extra: `,"perMessageDeflate":false`},
		{extra: `,"perMessageDeflate":null`},
		{extra: `,"perMessageDeflate":0`},
		{extra: `,"backlog":511`, warned: []string{"backlog"}, why: "somaxconn"},
		{extra: `,"backlog":null`},
		{extra: `,"maxFragments":16`, warned: []string{"maxFragments"}, why: "not by its number of fragments"},
		// Accepted silently: nothing in ilpfleet for them to govern, or ws 6 ignores them too.
		{extra: `,"clientTracking":false`},
		{extra: `,"clientTracking":true`},
		{extra: `,"maxBufferedChunks":1024`},
		{extra: `,"maxPendingAutoPongs":10`},
		{extra: `,"skipUTF8Validation":true`},
		{extra: `,"autoPong":true`},
		{extra: `,"allowSynchronousEvents":false`},
		// What a JS user's config typically holds, all at once.
		{extra: `,"host":"127.0.0.1","maxPayload":65536,"path":"/btp","perMessageDeflate":false,"clientTracking":true,"backlog":1024,"maxFragments":8`,
			maxPayload: 65536, path: "/btp", warned: []string{"backlog", "maxFragments"}},
		// Not expressible in JSON: refused, saying why.
		{extra: `,"verifyClient":null`, err: `option "%s.verifyClient" cannot be used: it is a JavaScript function`},
		{extra: `,"handleProtocols":{}`, err: `"%s.handleProtocols" cannot be used: it is a JavaScript function`},
		{extra: `,"server":{}`, err: `"%s.server" cannot be used: it is a Node.js http.Server`},
		{extra: `,"noServer":true`, err: `"%s.noServer" cannot be used`},
		{extra: `,"WebSocket":"ws"`, err: `"%s.WebSocket" cannot be used: it is a JavaScript class`},
		// Typos: the nearest key, and every key allowed there.
		{extra: `,"maxPayLoad":1000`, err: `unknown option "%s.maxPayLoad" (did you mean "maxPayload"?); known options here: host, port, maxPayload, path, perMessageDeflate, backlog`},
		{extra: `,"clienttracking":true`, err: `(did you mean "clientTracking"?)`},
	}
	for _, plugin := range []string{PluginBTP, PluginMiniAccounts} {
		at := map[string]string{PluginBTP: "listener.wsOpts", PluginMiniAccounts: "wsOpts"}[plugin]
		for _, tt := range tests {
			raw := wsOptsJSON(plugin, tt.extra)
			got, err := ParseOptions(plugin, json.RawMessage(raw))
			if tt.err != "" {
				want := tt.err
				if strings.Contains(want, "%s") {
					want = fmt.Sprintf(want, at)
				}
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("ParseOptions(%s, %s) error = %v; want one with %q", plugin, raw, err, want)
				}
				continue
			}
			if err != nil {
				t.Errorf("ParseOptions(%s, %s) = %v", plugin, raw, err)
				continue
			}
			maxPayload, path, ignored := wsParsed(t, got)
			var warned []string
			for _, o := range ignored {
				warned = append(warned, strings.TrimPrefix(o.Name, at+"."))
				if !strings.HasPrefix(o.Name, at+".") || !strings.Contains(o.Why, "ilpfleet") {
					t.Errorf("ParseOptions(%s, %s): ignored %+v; want it named from the top and saying what ilpfleet does", plugin, raw, o)
				}
			}
			if maxPayload != tt.maxPayload || path != tt.path || !reflect.DeepEqual(warned, tt.warned) {
				t.Errorf("ParseOptions(%s, %s): maxPayload %d, path %q, warned %q; want %d, %q, %q",
					plugin, raw, maxPayload, path, warned, tt.maxPayload, tt.path, tt.warned)
			}
			if tt.why != "" && (len(ignored) == 0 || !strings.Contains(ignored[0].Why, tt.why)) {
				t.Errorf("ParseOptions(%s, %s): ignored %+v; want the why to say %q", plugin, raw, ignored, tt.why)
			}
		}
	}
}

// TestWsOptionsWarnOnceAtBuild: building the link logs each option that has no effect once,
// at WARN, with the account — the listener too, which had no such option before.
func TestWsOptionsWarnOnceAtBuild(t *testing.T) {
	got := buildWarnings(t, func(plugin string) string {
		return wsOptsJSON(plugin, `,"backlog":5,"perMessageDeflate":true,"clientTracking":false`)
	})
	want := []string{
		"ilp-plugin-btp listener.wsOpts.perMessageDeflate", "ilp-plugin-btp listener.wsOpts.backlog",
		"ilp-plugin-mini-accounts wsOpts.perMessageDeflate", "ilp-plugin-mini-accounts wsOpts.backlog",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("warned about %q; want %q", got, want)
	}
}

// startFromJSON starts the server of a listener's JSON options on 127.0.0.1, a free port.
func startFromJSON(t *testing.T, plugin, raw string) net.Addr {
	t.Helper()
	opts, err := ParseOptions(plugin, json.RawMessage(raw))
	if err != nil {
		t.Fatal(err)
	}
	switch o := opts.(type) {
	case *PeerServerOptions:
		o.Host, o.Port, o.Common = "127.0.0.1", 0, quiet()
		return startServer(t, 0, echo, func(p *PeerServerOptions) { *p = *o }).Addr()
	case *ChildServerOptions:
		o.Host, o.Port, o.Common = "127.0.0.1", 0, quiet()
		return startChildServer(t, echo, func(c *ChildServerOptions) {
			o.AccountAddress, o.AssetCode, o.AssetScale = c.AccountAddress, c.AssetCode, c.AssetScale
			*c = *o
		}).Addr()
	}
	t.Fatalf("options %T are not a server's", opts)
	return nil
}

// TestMaxPayloadEnforced: on a real listener, a message up to wsOpts.maxPayload is read and
// a larger one closes the connection with 1009, as ws does; unset, or above ilpfleet's bound,
// the bound is MaxFrameSize.
func TestMaxPayloadEnforced(t *testing.T) {
	tests := []struct {
		extra  string
		size   int // of the message sent after auth
		closed bool
	}{
		{``, 1001, false},
		{``, MaxFrameSize, false},
		{``, MaxFrameSize + 1, true},
		{`,"maxPayload":1000`, 1000, false},
		{`,"maxPayload":1000`, 1001, true},
		{`,"maxPayload":104857600`, MaxFrameSize, false},
		{`,"maxPayload":104857600`, MaxFrameSize + 1, true},
	}
	for _, plugin := range []string{PluginBTP, PluginMiniAccounts} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s%s/%d", plugin, tt.extra, tt.size), func(t *testing.T) {
				c := rawDial(t, startFromJSON(t, plugin, wsOptsJSON(plugin, tt.extra)))
				writeFrame(t, c, &Frame{Type: TypeMessage, RequestID: 1, Protocols: []ProtocolData{
					{Name: "auth", Data: []byte{}}, {Name: "auth_token", Data: []byte("s3cret")}}})
				if ans, err := readFrame(t, c); err != nil || ans.Type != TypeResponse {
					t.Fatalf("auth answer %+v, %v", ans, err)
				}
				// A frame of an unknown type gets no reply (RFC 23): only its size matters.
				// The server stops reading at the header of a message too big, so these writes
				// may fail once it has closed: only the answer tells.
				big := append([]byte{99, 0, 0, 0, 2}, make([]byte, tt.size-5)...)
				werr := c.Write(context.Background(), websocket.MessageBinary, big)
				pkt, _ := prepare("test.x", "after").MarshalBinary()
				f, _ := AppendFrame(nil, &Frame{Type: TypeMessage, RequestID: 3, Protocols: []ProtocolData{{Name: "ilp", Data: pkt}}})
				if werr == nil {
					werr = c.Write(context.Background(), websocket.MessageBinary, f)
				}
				if werr != nil && !tt.closed {
					t.Fatal(werr)
				}
				ans, err := readFrame(t, c)
				// Closed: status 1009 when the close frame is read before the reset that the
				// unread rest of the message causes, a dropped connection otherwise.
				closed := websocket.CloseStatus(err) == websocket.StatusMessageTooBig ||
					(err != nil && websocket.CloseStatus(err) == -1 && !errors.Is(err, context.DeadlineExceeded))
				switch {
				case tt.closed && !closed:
					t.Errorf("after a %d-byte message: %+v, %v; want the connection closed (status 1009)", tt.size, ans, err)
				case !tt.closed && (err != nil || ans.RequestID != 3):
					t.Errorf("after a %d-byte message: %+v, %v; want the answer to request 3", tt.size, ans, err)
				}
			})
		}
	}
}

// upgradeAt sends a WebSocket upgrade request (a plain GET when !upgrade) for target and
// returns the HTTP status of the answer.
func upgradeAt(t *testing.T, addr net.Addr, target string, upgrade bool) int {
	t.Helper()
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	req := "GET " + target + " HTTP/1.1\r\nHost: " + addr.String() + "\r\n"
	if upgrade {
		req += "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	}
	if _, err := c.Write([]byte(req + "\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// TestWsPathHonoured: with wsOpts.path only that path upgrades, its query aside, compared
// byte for byte as ws does; an upgrade for another path gets 400, as from ws, and a request
// that is no upgrade 426. Without it any path upgrades.
func TestWsPathHonoured(t *testing.T) {
	tests := []struct {
		extra   string
		target  string
		upgrade bool
		want    int
	}{
		{`,"path":"/btp"`, "/btp", true, http.StatusSwitchingProtocols},
		{`,"path":"/btp"`, "/btp?token=x", true, http.StatusSwitchingProtocols},
		{`,"path":"/btp"`, "/", true, http.StatusBadRequest},
		{`,"path":"/btp"`, "/btp/", true, http.StatusBadRequest},
		{`,"path":"/btp"`, "/BTP", true, http.StatusBadRequest},
		{`,"path":"/btp"`, "/%62tp", true, http.StatusBadRequest},
		{`,"path":"/btp"`, "/btp", false, http.StatusUpgradeRequired},
		{`,"path":"/btp"`, "/other", false, http.StatusUpgradeRequired},
		{``, "/anything", true, http.StatusSwitchingProtocols},
		{`,"path":""`, "/anything", true, http.StatusSwitchingProtocols},
	}
	for _, plugin := range []string{PluginBTP, PluginMiniAccounts} {
		servers := map[string]net.Addr{}
		for _, tt := range tests {
			addr, ok := servers[tt.extra]
			if !ok {
				addr = startFromJSON(t, plugin, wsOptsJSON(plugin, tt.extra))
				servers[tt.extra] = addr
			}
			if got := upgradeAt(t, addr, tt.target, tt.upgrade); got != tt.want {
				t.Errorf("%s wsOpts {%s}: GET %s (upgrade %v) = %d; want %d", plugin, tt.extra, tt.target, tt.upgrade, got, tt.want)
			}
		}
	}
}

// TestClientReachesListenerPath: an ilp-plugin-btp client whose server URL has the listener's
// path connects and exchanges packets through it.
func TestClientReachesListenerPath(t *testing.T) {
	addr := startFromJSON(t, PluginBTP, wsOptsJSON(PluginBTP, `,"path":"/btp"`))
	c := startClient(t, fmt.Sprintf("btp+ws://:s3cret@%s/btp", addr), echo, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f, err := c.Send(ctx, prepare("test.x", "through /btp"))
	if err != nil || string(f.Data) != "through /btp" {
		t.Fatalf("Send = %+v, %v", f, err)
	}
}

func TestServerOptionsChecked(t *testing.T) {
	addr := func() ilp.Address { return "test.a" }
	for _, tt := range []struct {
		maxPayload int
		path       string
		ok         bool
	}{
		{0, "", true}, {1, "/", true}, {MaxFrameSize, "/btp", true},
		{-1, "", false}, {MaxFrameSize + 1, "", false}, {0, "btp", false}, {0, "/a?b", false},
	} {
		_, perr := NewPeerServer(PeerServerOptions{MaxPayload: tt.maxPayload, Path: tt.path, Common: quiet()})
		_, cerr := NewChildServer(ChildServerOptions{MaxPayload: tt.maxPayload, Path: tt.path, AccountAddress: addr, Common: quiet()})
		if (perr == nil) != tt.ok || (cerr == nil) != tt.ok {
			t.Errorf("MaxPayload %d, Path %q: NewPeerServer %v, NewChildServer %v; want ok=%v", tt.maxPayload, tt.path, perr, cerr, tt.ok)
		}
	}
}
