package kube

import (
	"fmt"
	"strings"
	"testing"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
)

// TestPortClashNamesNoOptionPath: the Kubernetes source keeps its own field names (see
// config.FieldError.exact): an Account's user never wrote options.wsOpts.port, so that the
// problem on the Account does not name it, in its field or its text.
func TestPortClashNamesNoOptionPath(t *testing.T) {
	older := account("older", 1, nil)
	younger := account("younger", 2, func(s *ilpv1.AccountSpec) { s.Link.BTPChildServer.Port = 7001 })
	_, problems, err := Build(Inputs{Connector: testConnector(), Accounts: []ilpv1.Account{younger, older}, Secret: secrets(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(problems); strings.Contains(got, "options.") {
		t.Errorf("a Kubernetes problem names a JS option path: %s", got)
	}
}
