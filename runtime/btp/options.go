package btp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ilpfleet/ilpfleet/runtime/link"
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

// btpJSON is the `options` object of an ilp-plugin-btp account. As in the JS plugin,
// listener.wsOpts (host, port) replaces the listener's {port}; listener.host is an ilpfleet
// shorthand for wsOpts.host.
type btpJSON struct {
	Server   *string `json:"server"`
	Listener *struct {
		Host   string  `json:"host"`
		Port   *int    `json:"port"`
		Secret *string `json:"secret"`
		WsOpts *struct {
			Host string `json:"host"`
			Port *int   `json:"port"`
		} `json:"wsOpts"`
	} `json:"listener"`
	ReconnectInterval *int64 `json:"reconnectInterval"` // ms
	ResponseTimeout   *int64 `json:"responseTimeout"`   // ms
}

// miniJSON is the `options` object of an ilp-plugin-mini-accounts account.
type miniJSON struct {
	Port   *int `json:"port"`
	WsOpts *struct {
		Host string `json:"host"`
		Port *int   `json:"port"`
	} `json:"wsOpts"`
	CurrencyScale   *int     `json:"currencyScale"` // accepted, unused: JS uses it for nothing IL-DCP answers
	AllowedOrigins  []string `json:"allowedOrigins"`
	GenerateAccount *bool    `json:"generateAccount"`
}

// ParseOptions turns the JS `options` of an account whose `plugin` is ilp-plugin-btp or
// ilp-plugin-mini-accounts into link options. Unknown keys are errors, so that a typo or an
// option this runtime does not implement is reported instead of silently ignored.
func ParseOptions(plugin string, raw json.RawMessage) (Options, error) {
	switch plugin {
	case PluginBTP:
		return parseBTP(raw)
	case PluginMiniAccounts:
		return parseMini(raw)
	}
	return nil, fmt.Errorf("btp: plugin %q is not a BTP plugin (want %s or %s)", plugin, PluginBTP, PluginMiniAccounts)
}

func decodeStrict(plugin string, raw json.RawMessage, v any) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = json.RawMessage("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("btp: %s options: %w", plugin, err)
	}
	if dec.More() {
		return fmt.Errorf("btp: %s options: data after the JSON object", plugin)
	}
	return nil
}

func millis(plugin, name string, v *int64) (time.Duration, error) {
	if v == nil {
		return 0, nil
	}
	if *v <= 0 || *v > int64(24*time.Hour/time.Millisecond) {
		return 0, fmt.Errorf("btp: %s options: %s must be a positive number of milliseconds up to a day, got %d", plugin, name, *v)
	}
	return time.Duration(*v) * time.Millisecond, nil
}

func parseBTP(raw json.RawMessage) (Options, error) {
	var j btpJSON
	if err := decodeStrict(PluginBTP, raw, &j); err != nil {
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
		if _, _, _, err := parseServerURL(*j.Server); err != nil {
			return nil, fmt.Errorf("btp: ilp-plugin-btp options: %w", err)
		}
		interval, err := millis(PluginBTP, "reconnectInterval", j.ReconnectInterval)
		if err != nil {
			return nil, err
		}
		return &ClientOptions{Server: *j.Server, ReconnectInterval: interval, Common: common}, nil
	case j.Listener != nil:
		l := j.Listener
		if w := l.WsOpts; w != nil {
			if l.Host != "" && w.Host != "" {
				return nil, errors.New("btp: ilp-plugin-btp options: set listener.wsOpts.host or listener.host, not both")
			}
			if w.Host != "" {
				l.Host = w.Host
			}
			if w.Port != nil {
				l.Port = w.Port
			}
		}
		if j.ReconnectInterval != nil {
			return nil, errors.New("btp: ilp-plugin-btp options: reconnectInterval applies to server, not listener")
		}
		if l.Port == nil || *l.Port < 1 || *l.Port > 65535 {
			return nil, errors.New("btp: ilp-plugin-btp options: listener.port must be set to a port between 1 and 65535")
		}
		if l.Secret == nil || *l.Secret == "" {
			return nil, errors.New("btp: ilp-plugin-btp options: listener.secret must be set and not empty")
		}
		return &PeerServerOptions{Host: l.Host, Port: *l.Port, Secret: *l.Secret, Common: common}, nil
	}
	return nil, errors.New("btp: ilp-plugin-btp options: set server (btp+ws://user:token@host:port) or listener ({port, secret})")
}

func parseMini(raw json.RawMessage) (Options, error) {
	var j miniJSON
	if err := decodeStrict(PluginMiniAccounts, raw, &j); err != nil {
		return nil, err
	}
	o := &ChildServerOptions{Port: DefaultChildPort, AllowedOrigins: j.AllowedOrigins, GenerateAccount: j.GenerateAccount}
	// As in JS: wsOpts replaces the default {port: opts.port || 3000} entirely.
	switch {
	case j.WsOpts != nil:
		if j.WsOpts.Port == nil {
			return nil, errors.New("btp: ilp-plugin-mini-accounts options: wsOpts.port must be set")
		}
		o.Host, o.Port = j.WsOpts.Host, *j.WsOpts.Port
	case j.Port != nil:
		o.Port = *j.Port
	}
	if o.Port < 1 || o.Port > 65535 {
		return nil, fmt.Errorf("btp: ilp-plugin-mini-accounts options: port %d must be between 1 and 65535", o.Port)
	}
	return o, nil
}
