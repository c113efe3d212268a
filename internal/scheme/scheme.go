// Package scheme builds the runtime.Scheme shared by the operator, the in-pod config source and
// the tests: the Kubernetes core kinds plus the ilp.ilpfleet.dev kinds.
package scheme

import (
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	ilpv1 "github.com/ilpfleet/ilpfleet/api/v1alpha1"
)

// New returns a scheme with the core kinds and the ilp.ilpfleet.dev kinds.
func New() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(ilpv1.AddToScheme(s))
	return s
}
