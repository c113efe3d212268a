package connector

import (
	"maps"
	"slices"
	"strings"
)

// LinkStartError is the error of Start and Apply when the links of some accounts could not
// start (a server that cannot listen: permission denied on a low port, address in use), and
// nothing else went wrong. Start and Apply still refuse the whole config with it, as a config
// file reload must (the file says what should run); a source that can leave one account out,
// such as the Kubernetes one, finds the accounts with errors.As and applies the rest.
type LinkStartError struct {
	// Accounts are the errors by account id.
	Accounts map[string]error
}

func (e *LinkStartError) Error() string {
	msgs := make([]string, 0, len(e.Accounts))
	for _, id := range e.IDs() {
		msgs = append(msgs, e.Accounts[id].Error())
	}
	return strings.Join(msgs, "; ")
}

// Unwrap gives the accounts' errors to errors.Is and errors.As.
func (e *LinkStartError) Unwrap() []error {
	errs := make([]error, 0, len(e.Accounts))
	for _, id := range e.IDs() {
		errs = append(errs, e.Accounts[id])
	}
	return errs
}

// IDs are the accounts whose link could not start, sorted.
func (e *LinkStartError) IDs() []string { return slices.Sorted(maps.Keys(e.Accounts)) }

// AccountErrors are the errors by account id: the method a config source matches with
// errors.As on an interface, so that it need not import this package.
func (e *LinkStartError) AccountErrors() map[string]error { return e.Accounts }
