package btp

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// wsServerJSON is listener.wsOpts of ilp-plugin-btp and wsOpts of ilp-plugin-mini-accounts:
// both plugins hand it unchanged to `new WebSocket.Server(wsOpts)` of the npm `ws` package, so
// a JS config may hold any of ws's server options. Listed here are those a JSON config can
// express: ws 6 (the version both plugins depend on) and the later ws 8 additions, for a
// config written against a newer ws. parseWsOpts says what each does in ilpfleet; the options
// JSON cannot carry are refused with the reason (wsJSOnly).
type wsServerJSON struct {
	Host string `json:"host"`
	Port *int   `json:"port"`
	// Honoured.
	MaxPayload *int64  `json:"maxPayload"`
	Path       *string `json:"path"`
	// Accepted, with a WARN naming what ilpfleet does instead. Kept raw: only whether they
	// are set (perMessageDeflate: truthy, as ws reads it) matters.
	PerMessageDeflate json.RawMessage `json:"perMessageDeflate"`
	Backlog           json.RawMessage `json:"backlog"`
	MaxFragments      json.RawMessage `json:"maxFragments"`
	// Accepted silently: what they govern does not exist in ilpfleet, or, for the ws 8 ones,
	// the ws 6 under the JS plugins ignores them too.
	ClientTracking         json.RawMessage `json:"clientTracking"`
	MaxBufferedChunks      json.RawMessage `json:"maxBufferedChunks"`
	MaxPendingAutoPongs    json.RawMessage `json:"maxPendingAutoPongs"`
	SkipUTF8Validation     json.RawMessage `json:"skipUTF8Validation"`
	AutoPong               json.RawMessage `json:"autoPong"`
	AllowSynchronousEvents json.RawMessage `json:"allowSynchronousEvents"`
}

// wsJSOnly are the ws server options a JSON config cannot use, and why: they stay unknown
// keys, but the error says why instead of suggesting a look-alike.
var wsJSOnly = map[string]string{
	"server":          "it is a Node.js http.Server object, which JSON cannot carry; ilpfleet listens on wsOpts.host and port itself",
	"noServer":        "it leaves listening to an HTTP server that the program hands to ws, which a JSON config cannot; ilpfleet listens on wsOpts.host and port itself",
	"verifyClient":    "it is a JavaScript function, which JSON cannot carry; peers are checked by their BTP auth (and mini-accounts' allowedOrigins)",
	"handleProtocols": "it is a JavaScript function, which JSON cannot carry; ilpfleet negotiates no WebSocket subprotocol",
	"WebSocket":       "it is a JavaScript class, which JSON cannot carry",
}

// jsOnlyWhy is why the key k of the object at prefix cannot be used, or "" when it is simply
// unknown. Only wsOpts objects have such keys.
func jsOnlyWhy(prefix, k string) string {
	if prefix != "wsOpts." && prefix != "listener.wsOpts." {
		return ""
	}
	return wsJSOnly[k]
}

// wsServerOpts is what parseWsOpts makes of wsOpts beside host and port.
type wsServerOpts struct {
	maxPayload int    // 0: MaxFrameSize
	path       string // "": any path
	ignored    []IgnoredOption
}

// parseWsOpts reads the ws server options of w, found at `at` ("listener.wsOpts" or
// "wsOpts"); w may be nil.
func parseWsOpts(plugin, at string, w *wsServerJSON) (wsServerOpts, error) {
	var o wsServerOpts
	if w == nil {
		return o, nil
	}
	ignore := func(name, why string) {
		o.ignored = append(o.ignored, IgnoredOption{at + "." + name, why})
	}
	// ws's default is 100 MiB; unset, ilpfleet keeps MaxFrameSize, the most any BTP frame
	// carrying an ILP packet needs: a larger bound only lets a peer make the connector buffer
	// more. ws reads 0 and below as no limit, which ilpfleet does not have either.
	if v := w.MaxPayload; v != nil {
		switch {
		case *v > 0 && *v <= MaxFrameSize:
			o.maxPayload = int(*v)
		case *v <= 0:
			ignore("maxPayload", fmt.Sprintf("ws reads %d as no limit; ilpfleet keeps its bound of %d bytes per BTP frame, and a larger message closes the connection with status 1009", *v, MaxFrameSize))
		default:
			ignore("maxPayload", fmt.Sprintf("%d is above ilpfleet's bound of %d bytes per BTP frame (room for the largest ILP packet), which applies instead: a larger message closes the connection with status 1009, as ws does", *v, MaxFrameSize))
		}
	}
	if w.Path != nil && *w.Path != "" { // "" is falsy in JS: any path
		p := *w.Path
		if !validPath(p) {
			return o, fmt.Errorf("btp: %s options: %s.path %q must start with / and have no ?: ws compares it with the path of the request, so no peer could connect", plugin, at, p)
		}
		o.path = p
	}
	if jsTruthy(w.PerMessageDeflate) {
		ignore("perMessageDeflate", "ilpfleet never negotiates permessage-deflate: frames go uncompressed, and a peer that offers it goes on without, as RFC 7692 allows (ILP packets are mostly conditions, fulfillments and encrypted data, which compress little)")
	}
	if isSet(w.Backlog) {
		ignore("backlog", "ilpfleet's listener gets the system's accept queue length (Linux: net.core.somaxconn)")
	}
	if isSet(w.MaxFragments) {
		ignore("maxFragments", "ilpfleet bounds a message by its size (maxPayload, at most the BTP frame bound), not by its number of fragments")
	}
	return o, nil
}

// isSet reports whether an option was given a value other than null (null is ws's default
// for each of them).
func isSet(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && !bytes.Equal(raw, []byte("null"))
}

// jsTruthy is JavaScript's truthiness of a JSON value, as ws tests perMessageDeflate: null,
// false, 0 and "" are false; every object (even {}) and array is true.
func jsTruthy(raw json.RawMessage) bool {
	if !isSet(raw) {
		return false
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return true // not reached: the decoder has checked the JSON
	}
	switch v := v.(type) {
	case bool:
		return v
	case float64: // a flag, not an amount: a float is exact enough to tell 0 from not 0
		return v != 0
	case string:
		return v != ""
	}
	return true
}
