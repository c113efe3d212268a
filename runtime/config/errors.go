package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/ilpfleet/ilpfleet/internal/textcut"
)

// FieldError is one problem with one setting. Every source and Validate report problems as
// FieldErrors so that a message always names where the setting came from (the environment
// variable or the file), the account, the field (by its JS config key) and the bad value.
type FieldError struct {
	Source  string // "CONNECTOR_ACCOUNTS", "config file /etc/connector.yaml", or "" (Validate alone)
	Account string // account id; "" for a global setting or a route
	Field   string // JS key path: "spread", "balance.maximum", "routes[1].peerId"
	Value   string // the bad value as given; "" when the setting is missing
	Problem string // what is wrong and what is expected

	// exact is the exact path of Field within an account's options ("options.listener.port"),
	// which the environment and file sources show as the field: their users wrote that path.
	// Validate alone keeps Field ("options"): the Kubernetes source, its caller, has its own
	// field names for what it puts in options. The same holds for the exactRef texts of a
	// Problem.
	exact string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.Source != "" {
		b.WriteString(e.Source)
		b.WriteString(": ")
	}
	if e.Account != "" {
		fmt.Fprintf(&b, "account %q: ", e.Account)
	}
	b.WriteString(e.Field)
	if e.Value != "" {
		fmt.Fprintf(&b, " = %s", e.Value)
	}
	b.WriteString(": ")
	b.WriteString(e.Problem)
	return b.String()
}

// hiddenValue is the Value of an error about a secret (routingSecret), which is not shown.
const hiddenValue = "(hidden)"

// fieldErrors collects FieldErrors; the zero value is ready to use.
type fieldErrors []*FieldError

func (l *fieldErrors) add(account, field, value, format string, args ...any) {
	l.addExact(account, field, "", value, format, args...)
}

// addRaw is add for a value as it was given in JSON. A string, number or boolean is shown as
// written; an object or an array, which may hold a secret ({"token": …} where a string
// belongs), is named by its kind and shape only (kindAndShape), after the problem.
func (l *fieldErrors) addRaw(account, field string, raw json.RawMessage, format string, args ...any) {
	if isJSONScalar(raw) {
		shown := string(bytes.TrimSpace(raw))
		if s, ok := rawString(raw); ok {
			shown = quote(s) // a URL's credentials hidden, a long value cut
		}
		l.add(account, field, shown, format, args...)
		return
	}
	l.add(account, field, "", "%s; got %s", fmt.Sprintf(format, args...), kindAndShape(raw))
}

// addExact is add for an error about an account's option, with the option's exact path
// (FieldError.exact).
func (l *fieldErrors) addExact(account, field, exact, value, format string, args ...any) {
	*l = append(*l, &FieldError{Account: account, Field: field, exact: exact, Value: value, Problem: fmt.Sprintf(format, args...)})
}

// join sets source on every error (unless a source function already named one), writes the
// settings a Problem refers to (keyRef) as config keys unless the source function wrote them
// its own way, and joins them, nil when there are none.
func (l fieldErrors) join(source func(*FieldError) string) error {
	if len(l) == 0 {
		return nil
	}
	errs := make([]error, len(l))
	for i, e := range l {
		if source != nil && e.exact != "" {
			e.Field = e.exact
		}
		e.Problem = resolveExact(e.Problem, source != nil)
		if e.Source == "" && source != nil {
			e.Source = source(e)
		}
		e.Problem = resolveKeys(e.Problem, func(k string) string { return k })
		errs[i] = e
	}
	return errors.Join(errs...)
}

// keyMark brackets a top-level config key inside a Problem (see keyRef). A NUL cannot come
// from an environment variable, and user text in a Problem is %q-quoted, which escapes it.
const keyMark = "\x00"

// keyRef names another top-level setting in a Problem. The source decides how it reads:
// CONNECTOR_ADMIN_API_PORT when the config came from the environment, adminApiPort from a
// file or in Validate's errors — the name the user actually set.
func keyRef(key string) string {
	return keyMark + key + keyMark
}

// resolveKeys writes each keyRef of problem with name; text between marks that is not a
// setting is kept as it was.
func resolveKeys(problem string, name func(key string) string) string {
	if !strings.Contains(problem, keyMark) {
		return problem
	}
	parts := strings.Split(problem, keyMark)
	for i := 1; i < len(parts); i += 2 {
		if _, ok := settingByKey(parts[i]); ok {
			parts[i] = name(parts[i])
		}
	}
	return strings.Join(parts, "")
}

// exactMark brackets text of a Problem that only the environment and file sources show: the
// exact option path of another account's setting ("options.listener.port"), which the users
// of those sources wrote, and Validate's caller (the Kubernetes source) did not. Like keyMark,
// it cannot come from an environment variable or a %q-quoted user text.
const exactMark = "\x01"

// exactRef is text of a Problem shown only when a source resolves the error (see exactMark).
func exactRef(text string) string {
	return exactMark + text + exactMark
}

// resolveExact keeps the exactRef texts of problem when shown is true and drops them otherwise.
func resolveExact(problem string, shown bool) string {
	if !strings.Contains(problem, exactMark) {
		return problem
	}
	parts := strings.Split(problem, exactMark)
	var b strings.Builder
	for i, p := range parts {
		if i%2 == 0 || shown {
			b.WriteString(p)
		}
	}
	return b.String()
}

// FieldErrors returns the FieldErrors inside err (as returned by FromEnv, FromFile or
// Validate), in order. Other errors inside err are skipped.
func FieldErrors(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		if fe, ok := e.(*FieldError); ok {
			out = append(out, fe)
			return
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		walk(errors.Unwrap(e))
	}
	walk(err)
	return out
}

// quote formats a value for an error message; long values are cut so that a message stays
// readable (and a secret pasted in the wrong place is not echoed whole), and a URL's
// credentials are hidden (redactURL).
func quote(s string) string {
	s = redactURL(s)
	const max = 64
	if len(s) > max {
		return fmt.Sprintf("%q…", textcut.Prefix(s, max))
	}
	return fmt.Sprintf("%q", s)
}

// redactURL hides the userinfo and the query of a URL (a Redis or engine URL pasted into
// store or backend, say), where credentials go: a user name can be a token too. Text that
// looks like a URL with userinfo but does not parse is not shown at all.
func redactURL(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || scheme == "" || (!strings.Contains(rest, "@") && !strings.Contains(rest, "?")) {
		return s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "(a URL that does not parse, not shown)"
	}
	if u.User != nil {
		u.User = url.User("xxxxx") // as url.URL.Redacted writes a password
	}
	if u.RawQuery != "" {
		u.RawQuery = "xxxxx"
	}
	return u.String()
}
