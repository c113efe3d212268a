package btp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/ilpfleet/ilpfleet/internal/suggest"
	"github.com/ilpfleet/ilpfleet/runtime/link"
	"github.com/ilpfleet/ilpfleet/runtime/tlsopt"
)

// Plugin names of the JS connector that this package replaces.
const (
	PluginBTP          = "ilp-plugin-btp"
	PluginMiniAccounts = "ilp-plugin-mini-accounts"
)

// Options is the parsed configuration of one BTP link: *ClientOptions, *PeerServerOptions or
// *ChildServerOptions. The connector fills the Go-only fields (Common, and AccountAddress, the
// asset and Tokens of a ChildServerOptions) before calling New.
type Options interface{ btpOptions() }

func (*ClientOptions) btpOptions()      {}
func (*PeerServerOptions) btpOptions()  {}
func (*ChildServerOptions) btpOptions() {}

// New builds the link for parsed options.
func New(o Options) (link.Link, error) {
	switch o := o.(type) {
	case *ClientOptions:
		return NewClient(*o)
	case *PeerServerOptions:
		return NewPeerServer(*o)
	case *ChildServerOptions:
		return NewChildServer(*o)
	}
	return nil, fmt.Errorf("btp: unknown options type %T", o)
}

// btpJSON is the `options` object of an ilp-plugin-btp account (IlpPluginBtpConstructorOptions
// of ilp-plugin-btp 1.5.0). As in the JS plugin, listener.wsOpts.port replaces the listener's
// port; listener.host is an ilpfleet shorthand for wsOpts.host.
type btpJSON struct {
	Server   *string `json:"server"`
	Listener *struct {
		Port   *int          `json:"port"`
		Secret *string       `json:"secret"`
		WsOpts *wsServerJSON `json:"wsOpts"`
		Host   string        `json:"host"`
		// TLS is an ilpfleet extension: serve btp+wss:// with this certificate, and require
		// client certificates when it has clientCa (runtime/tlsopt's ServerOptions).
		TLS json.RawMessage `json:"tls"`
	} `json:"listener"`
	ReconnectInterval        *int64                     `json:"reconnectInterval"`        // ms
	ReconnectIntervals       []int64                    `json:"reconnectIntervals"`       // ms
	ReconnectClearTryTimeout *int64                     `json:"reconnectClearTryTimeout"` // ms
	ResponseTimeout          *int64                     `json:"responseTimeout"`          // ms
	BTPAccount               *string                    `json:"btpAccount"`
	BTPToken                 *string                    `json:"btpToken"`
	BTPAuthFlags             map[string]json.RawMessage `json:"btpAuthFlags"`
	// TLS is an ilpfleet extension for btp+wss:// servers: a private CA, a client certificate
	// (mutual TLS), the name to check (runtime/tlsopt).
	TLS *tlsopt.Options `json:"tls"`
}

// The keys each options object may have, for the unknown-option error (and its suggestion),
// and those of the objects inside it, by path: read from the json tags of btpJSON and
// miniJSON, so that an option is declared once, in its struct, in the order errors list them.
var (
	btpKeys, btpNested   = optionKeys(reflect.TypeFor[btpJSON]())
	miniKeys, miniNested = optionKeys(reflect.TypeFor[miniJSON]())
)

// optionKeys lists the json keys of the struct t in field order, and those of every struct
// (or pointer to one) inside it by its dotted path.
func optionKeys(t reflect.Type) (keys []string, nested map[string][]string) {
	nested = map[string][]string{}
	var walk func(t reflect.Type, prefix string) []string
	walk = func(t reflect.Type, prefix string) []string {
		var out []string
		for i := range t.NumField() {
			f := t.Field(i)
			key, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			out = append(out, key)
			if ft := f.Type; ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.Struct {
				nested[prefix+key] = walk(ft.Elem(), prefix+key+".")
			}
		}
		return out
	}
	return walk(t, ""), nested
}

// miniJSON is the `options` object of an ilp-plugin-mini-accounts account
// (IlpPluginMiniAccountsConstructorOptions of ilp-plugin-mini-accounts 4.2.0, less `_store`,
// which ilp-connector passes itself and JSON cannot hold).
type miniJSON struct {
	Port               *int            `json:"port"`
	WsOpts             *wsServerJSON   `json:"wsOpts"`
	CurrencyScale      *int            `json:"currencyScale"`
	DebugHostIldcpInfo json.RawMessage `json:"debugHostIldcpInfo"`
	AllowedOrigins     []string        `json:"allowedOrigins"`
	GenerateAccount    *bool           `json:"generateAccount"`
	// TLS is an ilpfleet extension: serve btp+wss:// (runtime/tlsopt's ServerOptions).
	TLS json.RawMessage `json:"tls"`
}

// IgnoredOption is a JS plugin option that ilpfleet accepts but does without. The link logs
// each at WARN once, when it is built, so that a JS config runs and still says what it drops.
type IgnoredOption struct {
	Name string // the option as written in `options`
	Why  string // why it has no effect here
}

// warnIgnored logs the ignored options of a link being built; log names the account (the
// connector gives every link a logger with the account id).
func warnIgnored(log *slog.Logger, plugin string, ignored []IgnoredOption) {
	for _, o := range ignored {
		log.Warn("btp: plugin option accepted but has no effect in ilpfleet",
			"plugin", plugin, "option", o.Name, "why", o.Why)
	}
}

// UnknownOptionError is an option key that the JS plugin does not know either: most likely a
// typo. Its message suggests the nearest key allowed where it was found, and lists them all.
type UnknownOptionError struct {
	Plugin string
	Path   string   // e.g. "listener.sekret"
	Key    string   // the last element of Path
	Known  []string // the keys allowed beside it
	// Why is set for an option the JS side knows but a JSON config cannot use (see
	// wsJSOnly); it replaces the suggestion, which would point at an unrelated key.
	Why string
}

func (e *UnknownOptionError) Error() string {
	if e.Why != "" {
		return fmt.Sprintf("btp: %s options: option %q cannot be used: %s; known options here: %s",
			e.Plugin, e.Path, e.Why, strings.Join(e.Known, ", "))
	}
	return fmt.Sprintf("btp: %s options: unknown option %q%s; known options here: %s",
		e.Plugin, e.Path, suggest.DidYouMean(e.Key, e.Known), strings.Join(e.Known, ", "))
}

// ParseOptions turns the JS `options` of an account whose `plugin` is ilp-plugin-btp or
// ilp-plugin-mini-accounts into link options. Unknown keys are errors (*UnknownOptionError),
// so that a typo is reported instead of silently ignored; JS options that have no meaning here
// are accepted and listed in the options' Ignored.
func ParseOptions(plugin string, raw json.RawMessage) (Options, error) {
	switch plugin {
	case PluginBTP:
		return parseBTP(raw)
	case PluginMiniAccounts:
		return parseMini(raw)
	}
	return nil, fmt.Errorf("btp: plugin %q is not a BTP plugin (want %s or %s)", plugin, PluginBTP, PluginMiniAccounts)
}

// checkKeys refuses a key of the object raw that is not in known; nested lists the objects
// inside it to check as well, by their path from the top ("listener.wsOpts" → its keys), so
// that a rule applies only where it belongs. What is not an object is left to the decoder.
func checkKeys(plugin, prefix string, raw json.RawMessage, known []string, nested map[string][]string) error {
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil {
		return nil
	}
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		path := prefix + k
		if !slices.Contains(known, k) {
			return &UnknownOptionError{Plugin: plugin, Path: path, Key: k, Known: known, Why: jsOnlyWhy(prefix, k)}
		}
		if sub, ok := nested[path]; ok {
			if err := checkKeys(plugin, path+".", obj[k], sub, nested); err != nil {
				return err
			}
		}
	}
	return nil
}

func decodeStrict(plugin string, raw json.RawMessage, v any, known []string, nested map[string][]string) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = json.RawMessage("{}")
	}
	if err := checkKeys(plugin, "", raw, known, nested); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields() // a backstop: checkKeys has named every key already
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("btp: %s options: %w", plugin, err)
	}
	if dec.More() {
		return fmt.Errorf("btp: %s options: data after the JSON object", plugin)
	}
	return nil
}

const maxMillis = int64(24 * time.Hour / time.Millisecond)

// millis reads a wait in ms. 0 means the default, as in JS, which reads each of these
// options with `||` (or `&&`), so that 0 is the same as leaving it out.
func millis(plugin, name string, v *int64) (time.Duration, error) {
	if v == nil {
		return 0, nil
	}
	if *v < 0 || *v > maxMillis {
		return 0, fmt.Errorf("btp: %s options: %s must be 0 (the default) or a positive number of milliseconds up to a day, got %d", plugin, name, *v)
	}
	return time.Duration(*v) * time.Millisecond, nil
}

// intervals reads reconnectIntervals: waits in ms, 0 allowed (the JS default list starts with
// 0: retry at once), at least one.
func intervals(v []int64) ([]time.Duration, error) {
	if v == nil {
		return nil, nil
	}
	if len(v) == 0 {
		return nil, errors.New("btp: ilp-plugin-btp options: reconnectIntervals must list at least one wait")
	}
	out := make([]time.Duration, len(v))
	for i, ms := range v {
		if ms < 0 || ms > maxMillis {
			return nil, fmt.Errorf("btp: ilp-plugin-btp options: reconnectIntervals[%d] must be 0 to a day in milliseconds, got %d", i, ms)
		}
		out[i] = time.Duration(ms) * time.Millisecond
	}
	return out, nil
}

// CheckTLS checks the TLS options of a BTP account's options as ParseOptions does: the
// dialing `tls` of ilp-plugin-btp (its keys, its PEM text and files, and where it may be set:
// beside a btp+wss:// server, not a btp+ws:// one nor a listener), and the listening ones,
// ilp-plugin-btp's `listener.tls` and ilp-plugin-mini-accounts' `tls` (their keys, PEM text
// and files). They are the options whose validity depends on more than the config's text (a
// file, or the Secret the operator renders it from), so runtime/config checks them with the
// account's other fields, making a bad tls that account's problem rather than a config the
// connector refuses whole when it builds the link. Options that are not a JSON object, other
// plugins and no tls: nil (ParseOptions reports the rest, server and listener both set or a
// server that is not a URL among them).
func CheckTLS(plugin string, raw json.RawMessage) error {
	var j struct {
		TLS      json.RawMessage `json:"tls"`
		Server   *string         `json:"server"`
		Listener json.RawMessage `json:"listener"`
	}
	if (plugin != PluginBTP && plugin != PluginMiniAccounts) || json.Unmarshal(raw, &j) != nil {
		return nil
	}
	if plugin == PluginMiniAccounts {
		if _, err := tlsopt.LoadServer("tls", j.TLS); err != nil {
			return fmt.Errorf("btp: %s options: %w", plugin, err)
		}
		return nil
	}
	var l struct {
		TLS json.RawMessage `json:"tls"`
	}
	if json.Unmarshal(j.Listener, &l) == nil {
		if _, err := tlsopt.LoadServer("listener.tls", l.TLS); err != nil {
			return fmt.Errorf("btp: %s options: %w", plugin, err)
		}
	}
	t, err := tlsopt.Decode("tls", j.TLS)
	if err == nil && t == nil {
		return nil
	}
	switch {
	case err != nil:
	case j.Server != nil:
		err = tlsNeedsWSS(*j.Server)
	case len(j.Listener) > 0 && string(j.Listener) != "null":
		err = errTLSBesideListener
	}
	if err == nil {
		_, err = t.Config("tls")
	}
	if err != nil {
		return fmt.Errorf("btp: ilp-plugin-btp options: %w", err)
	}
	return nil
}

// errTLSBesideListener refuses the dialing tls option beside a listener.
var errTLSBesideListener = errors.New("tls applies to server (the dialing side); a listener's TLS goes in listener.tls")

func parseBTP(raw json.RawMessage) (Options, error) {
	var j btpJSON
	if err := decodeStrict(PluginBTP, raw, &j, btpKeys, btpNested); err != nil {
		return nil, err
	}
	timeout, err := millis(PluginBTP, "responseTimeout", j.ResponseTimeout)
	if err != nil {
		return nil, err
	}
	common := Common{ResponseTimeout: timeout}
	switch {
	case j.Server != nil && j.Listener != nil:
		return nil, errors.New("btp: ilp-plugin-btp options: set either server (dial) or listener (accept), not both")
	case j.Server != nil:
		return parseBTPClient(&j, common)
	case j.Listener != nil:
		return parseBTPListener(&j, common)
	}
	return nil, errors.New("btp: ilp-plugin-btp options: set server (btp+ws://user:token@host:port) or listener ({port, secret})")
}

func parseBTPClient(j *btpJSON, common Common) (Options, error) {
	_, user, token, err := parseServerURL(*j.Server)
	if err != nil {
		return nil, fmt.Errorf("btp: ilp-plugin-btp options: %w", err)
	}
	o := &ClientOptions{Server: *j.Server, Common: common, Account: deref(j.BTPAccount), Token: deref(j.BTPToken)}
	if err := credentialsOnce(user, token, o.Account, o.Token, "btpAccount/btpToken"); err != nil {
		return nil, fmt.Errorf("btp: ilp-plugin-btp options: %w", err)
	}
	if o.ReconnectInterval, err = millis(PluginBTP, "reconnectInterval", j.ReconnectInterval); err != nil {
		return nil, err
	}
	if o.ReconnectIntervals, err = intervals(j.ReconnectIntervals); err != nil {
		return nil, err
	}
	if o.ReconnectClearTryTimeout, err = millis(PluginBTP, "reconnectClearTryTimeout", j.ReconnectClearTryTimeout); err != nil {
		return nil, err
	}
	if o.AuthFlags, err = authFlags(j.BTPAuthFlags); err != nil {
		return nil, err
	}
	if j.TLS != nil {
		if err := tlsNeedsWSS(*j.Server); err != nil {
			return nil, fmt.Errorf("btp: ilp-plugin-btp options: %w", err)
		}
		if o.TLS, err = j.TLS.Config("tls"); err != nil {
			return nil, fmt.Errorf("btp: ilp-plugin-btp options: %w", err)
		}
	}
	switch {
	case o.ReconnectIntervals != nil && o.ReconnectInterval > 0:
		o.Ignored = append(o.Ignored, IgnoredOption{"reconnectInterval", "reconnectIntervals is set and takes precedence, as in JS"})
		o.ReconnectInterval = 0
	case o.ReconnectIntervals == nil && o.ReconnectClearTryTimeout > 0:
		o.Ignored = append(o.Ignored, IgnoredOption{"reconnectClearTryTimeout", "it resets the reconnectIntervals schedule, which is not set; ilpfleet's default backoff starts over after each authenticated connection"})
		o.ReconnectClearTryTimeout = 0
	}
	return o, nil
}

func parseBTPListener(j *btpJSON, common Common) (Options, error) {
	l := j.Listener
	portOption := "listener.port"
	if w := l.WsOpts; w != nil {
		if l.Host != "" && w.Host != "" {
			return nil, errors.New("btp: ilp-plugin-btp options: set listener.wsOpts.host or listener.host, not both")
		}
		if w.Host != "" {
			l.Host = w.Host
		}
		if w.Port != nil {
			l.Port, portOption = w.Port, "listener.wsOpts.port"
		}
	}
	// JS ignores the client's options on a listener; a listener given them was most likely
	// meant to dial, so they are refused (null is the same as leaving one out).
	for _, o := range []struct {
		name string
		set  bool
	}{
		{"reconnectInterval", j.ReconnectInterval != nil},
		{"reconnectIntervals", j.ReconnectIntervals != nil},
		{"reconnectClearTryTimeout", j.ReconnectClearTryTimeout != nil},
		{"btpAccount", j.BTPAccount != nil},
		{"btpToken", j.BTPToken != nil},
		{"btpAuthFlags", j.BTPAuthFlags != nil},
	} {
		if o.set {
			return nil, fmt.Errorf("btp: ilp-plugin-btp options: %s applies to server, not listener", o.name)
		}
	}
	if j.TLS != nil {
		return nil, fmt.Errorf("btp: ilp-plugin-btp options: %w", errTLSBesideListener)
	}
	if l.Port == nil || *l.Port < 1 || *l.Port > 65535 {
		return nil, errors.New("btp: ilp-plugin-btp options: listener.port must be set to a port between 1 and 65535")
	}
	if l.Secret == nil || *l.Secret == "" {
		return nil, errors.New("btp: ilp-plugin-btp options: listener.secret must be set and not empty")
	}
	w, err := parseWsOpts(PluginBTP, "listener.wsOpts", l.WsOpts)
	if err != nil {
		return nil, err
	}
	t, err := tlsopt.LoadServer("listener.tls", l.TLS)
	if err != nil {
		return nil, fmt.Errorf("btp: ilp-plugin-btp options: %w", err)
	}
	return &PeerServerOptions{Host: l.Host, Port: *l.Port, Secret: *l.Secret, MaxPayload: w.maxPayload, Path: w.path,
		TLS: t, Common: common, Ignored: w.ignored, portOption: portOption}, nil
}

// authFlags turns btpAuthFlags into the extra entries of the auth frame, as JS's
// protocol-data-converter does: a string as text, anything else (null too: typeof null is
// 'object') as JSON. JSON objects have no key order in Go, so they go in name order (JS:
// insertion order); peers read them by name.
func authFlags(m map[string]json.RawMessage) ([]ProtocolData, error) {
	var out []ProtocolData
	for _, name := range slices.Sorted(maps.Keys(m)) {
		v := m[name]
		if name == "" {
			return nil, errors.New("btp: ilp-plugin-btp options: btpAuthFlags has an empty name")
		}
		// Only a JSON string is text: json.Unmarshal of null into a string succeeds too.
		if v = bytes.TrimSpace(v); len(v) > 0 && v[0] == '"' {
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return nil, fmt.Errorf("btp: ilp-plugin-btp options: btpAuthFlags.%s: %w", name, err)
			}
			out = append(out, ProtocolData{Name: name, ContentType: ContentText, Data: []byte(s)})
			continue
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, v); err != nil {
			return nil, fmt.Errorf("btp: ilp-plugin-btp options: btpAuthFlags.%s: %w", name, err)
		}
		out = append(out, ProtocolData{Name: name, ContentType: ContentJSON, Data: buf.Bytes()})
	}
	return out, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func parseMini(raw json.RawMessage) (Options, error) {
	var j miniJSON
	if err := decodeStrict(PluginMiniAccounts, raw, &j, miniKeys, miniNested); err != nil {
		return nil, err
	}
	o := &ChildServerOptions{Port: DefaultChildPort, AllowedOrigins: j.AllowedOrigins, GenerateAccount: j.GenerateAccount}
	// As in JS: wsOpts replaces the default {port: opts.port || 3000} entirely.
	switch {
	case j.WsOpts != nil:
		if j.WsOpts.Port == nil {
			return nil, errors.New("btp: ilp-plugin-mini-accounts options: wsOpts.port must be set")
		}
		o.Host, o.Port, o.portOption = j.WsOpts.Host, *j.WsOpts.Port, "wsOpts.port"
	case j.Port != nil:
		o.Port, o.portOption = *j.Port, "port"
	}
	if o.Port < 1 || o.Port > 65535 {
		return nil, fmt.Errorf("btp: ilp-plugin-mini-accounts options: port %d must be between 1 and 65535", o.Port)
	}
	w, err := parseWsOpts(PluginMiniAccounts, "wsOpts", j.WsOpts)
	if err != nil {
		return nil, err
	}
	o.MaxPayload, o.Path, o.Ignored = w.maxPayload, w.path, w.ignored
	if o.TLS, err = tlsopt.LoadServer("tls", j.TLS); err != nil {
		return nil, fmt.Errorf("btp: ilp-plugin-mini-accounts options: %w", err)
	}
	if j.CurrencyScale != nil {
		o.Ignored = append(o.Ignored, IgnoredOption{"currencyScale", "mini-accounts keeps it for subclasses that settle; children learn the account's assetScale over IL-DCP"})
	}
	if j.DebugHostIldcpInfo != nil {
		o.Ignored = append(o.Ignored, IgnoredOption{"debugHostIldcpInfo", "a debugging stand-in for asking the connector over IL-DCP; ilpfleet's connector gives the address and asset directly"})
	}
	return o, nil
}
