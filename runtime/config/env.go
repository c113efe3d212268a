package config

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/ilpfleet/ilpfleet/internal/suggest"
)

// EnvPrefix starts every variable of the JS connector.
const EnvPrefix = "CONNECTOR_"

// envBools are the boolean spellings of the JS loader (src/services/config.ts). The JS
// loader reads any other value as false; FromEnv refuses it instead, so that "yes" or "TRUE"
// does not silently turn a feature off.
var envBools = map[string]string{"1": "true", "true": "true", "0": "false", "false": "false", "": "false"}

// FromEnv builds a config from the JS connector's CONNECTOR_* variables (same names, same
// value formats, same defaults; see docs/configuration.md) and validates it. lookup is
// os.LookupEnv or a fake. On error the config is nil and the error joins one *FieldError per
// problem, each naming the variable.
func FromEnv(lookup func(string) (string, bool)) (*Config, error) {
	c := Defaults()
	var l fieldErrors
	var given sourceFlags
	for _, s := range settings {
		v, ok := lookup(EnvName(s.key))
		if !ok {
			continue
		}
		given.note(s.key)
		raw, shown, problem := envToJSON(s.kind, v)
		if problem != "" {
			l.add("", s.key, shown, "%s", problem)
			continue
		}
		var errs fieldErrors
		s.apply(c, raw, &errs)
		for _, e := range errs {
			switch {
			case e.Account != "" || e.Field != s.key:
				// About a part of the value (an account's setting, a route): the setter shows it.
			case s.kind == kObject || s.kind == kArray:
				// JSON as the user wrote it, which may hold credentials: the setter names the
				// kind of a wrong value instead of quoting it, and a repeated account id has no
				// value to show.
			case e.Value == hiddenValue:
				// A secret (routingSecret).
			default:
				e.Value = quote(v) // a number, boolean or string: what the user wrote, not its JSON form
			}
		}
		l = append(l, errs...)
	}
	return finish(c, given, l, envSource)
}

// FromEnviron is FromEnv over an os.Environ()-style list, plus the warnings of UnknownEnv.
func FromEnviron(environ []string) (*Config, []string, error) {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	c, err := FromEnv(func(k string) (string, bool) { v, ok := m[k]; return v, ok })
	return c, UnknownEnv(environ), err
}

// UnknownEnv returns a warning for every CONNECTOR_* variable in environ (os.Environ() form)
// that is not a setting, with the closest known name, so that a typo is visible. Like the JS
// connector, unknown variables are otherwise ignored.
func UnknownEnv(environ []string) []string {
	known := make([]string, len(settings))
	for i, s := range settings {
		known[i] = EnvName(s.key)
	}
	var out []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, EnvPrefix) && !contains(known, k) {
			out = append(out, fmt.Sprintf("unknown environment variable %s ignored%s", k, suggest.DidYouMean(k, known)))
		}
	}
	sort.Strings(out)
	return out
}

// envToJSON converts a variable's text to JSON the way the JS loader does by schema type:
// strings as is, objects and arrays parsed as JSON, booleans from envBools, numbers with
// JavaScript's Number(). A value that is not UTF-8 is refused: encoding/json would replace
// its invalid bytes with U+FFFD, so a path, host or plugin secret would silently change. So is
// JSON with a lone surrogate escape (loneSurrogate), which it decodes to U+FFFD as well.
// shown is the value as an error shows it: quoted, or "" when the problem quotes the bad spot.
func envToJSON(k kind, v string) (raw json.RawMessage, shown, problem string) {
	if pos, bad := firstInvalidUTF8(v); bad {
		// Not quoted: the value may be a secret (routingSecret, an account's options).
		return nil, "", invalidUTF8Problem(v, pos, k == kObject || k == kArray)
	}
	switch k {
	case kString:
		b, _ := json.Marshal(v)
		return b, "", ""
	case kBool:
		b, ok := envBools[v]
		if !ok {
			return nil, quote(v), `expected "true", "false", "1", "0" or "" (the JS connector reads any other value as false)`
		}
		return json.RawMessage(b), "", ""
	case kInteger, kNumber:
		d, ok := parseJSNumber(v)
		if !ok {
			return nil, quote(v), "expected a number (JSON or JavaScript notation, e.g. 1000 or 1e3)"
		}
		return json.RawMessage(d.String()), "", ""
	default:
		var probe any
		if err := json.Unmarshal([]byte(v), &probe); err != nil {
			// The value's first characters rarely hold the mistake: say where it is instead.
			if p, ok := jsonProblem(v, err); ok {
				return nil, "", "expected JSON; " + p
			}
			return nil, quote(v), "expected JSON: " + err.Error()
		}
		if p, ok := surrogateProblem(v); ok {
			return nil, "", p
		}
		return json.RawMessage(v), "", ""
	}
}

// invalidUTF8Problem says where text stops being UTF-8, without showing it, and in JSON text
// (withExcerpt) shows the structure around that spot (see excerpt).
func invalidUTF8Problem(text string, pos int, withExcerpt bool) string {
	p := "not valid UTF-8 at " + position(text, pos) + " (its invalid bytes would be replaced, changing the value)"
	if withExcerpt {
		p += "; near: " + excerpt(text, pos)
	}
	return p
}

// envSource names the variable a FieldError belongs to; a global setting's field becomes
// the variable itself so the message reads "CONNECTOR_SPREAD = ...".
func envSource(e *FieldError) string {
	e.Problem = resolveKeys(e.Problem, EnvName)
	top := topKey(e)
	if e.Account == "" && e.Field == top {
		e.Field = EnvName(top)
		return ""
	}
	e.Field = strings.TrimPrefix(e.Field, top)
	if e.Field == "" || e.Field[0] == '.' {
		e.Field = strings.TrimPrefix(e.Field, ".")
	}
	return EnvName(top)
}

// topKey is the top-level config key a FieldError is about.
func topKey(e *FieldError) string {
	if e.Account != "" {
		return "accounts"
	}
	if i := strings.IndexAny(e.Field, ".["); i > 0 {
		return e.Field[:i]
	}
	return e.Field
}

// sourceFlags records which settings a source gave, for the defaults that depend on it.
type sourceFlags map[string]bool

func (f *sourceFlags) note(key string) {
	if *f == nil {
		*f = sourceFlags{}
	}
	(*f)[key] = true
}

// finish applies the source-dependent defaults, validates, and names the source in errors.
func finish(c *Config, given sourceFlags, l fieldErrors, source func(*FieldError) string) (*Config, error) {
	resolveStore(c, given)
	checkImplicitBackend(c, given, &l)
	if len(l) == 0 {
		l = c.validate()
	}
	if err := l.join(source); err != nil {
		return nil, err
	}
	return c, nil
}

// resolveStore maps the JS store names to the Go ones. The JS default store is leveldown, a
// database at storePath: with a store path and no store, the Go connector uses its file store
// so that balances survive a restart as they did with the JS connector.
func resolveStore(c *Config, given sourceFlags) {
	if alias, ok := storeAliases[c.Store]; ok {
		c.Store = alias
	}
	if !given["store"] && c.StorePath != "" {
		c.Store = StoreFile
	}
}

// checkImplicitBackend refuses a config that relies on the JS default backend (ecb: live
// exchange rates) while trading between different assets: the Go default, one-to-one, would
// silently convert them 1:1.
func checkImplicitBackend(c *Config, given sourceFlags, l *fieldErrors) {
	if given["backend"] {
		return
	}
	codes := map[string]bool{}
	for _, a := range c.Accounts {
		codes[a.AssetCode] = true
	}
	if len(codes) < 2 {
		return
	}
	l.add("", "backend", "", "not set, and the accounts use different assets (%s): the JS connector would use "+
		"its default \"ecb\" backend (live ECB rates), which the Go connector fetches only when told to, and the Go default %q "+
		"would convert between them 1:1. Set %s to %q for the ECB's rates as in JS, %q to accept 1:1, or %q with the rates in %s",
		strings.Join(sortedKeys(codes), ", "), BackendOneToOne, keyRef("backend"), BackendECB, BackendOneToOne, BackendStatic, keyRef("backendConfig"))
}
