package kube

import (
	"context"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// secretCache holds the Secrets the config uses, read uncached from the API server (the pod's
// Role allows get by name only) and read again only when the resourceVersion the operator
// copies into Connector.status.secretVersions moves: the pods never watch Secrets.
type secretCache struct {
	reader client.Reader
	ns     string

	mu      sync.Mutex
	entries map[string]secretEntry
}

// secretEntry is one Secret as last read; err is a NotFound kept until the version moves.
type secretEntry struct {
	version string // the operator's recorded resourceVersion when it was read ("" if none)
	data    map[string][]byte
	err     error
}

func newSecretCache(r client.Reader, ns string) *secretCache {
	return &secretCache{reader: r, ns: ns, entries: map[string]secretEntry{}}
}

// secretRead is one sync's view of the Secrets: it remembers which it used (the others are
// forgotten at the end) and whether a read failed for a passing reason.
type secretRead struct {
	c         *secretCache
	ctx       context.Context
	versions  map[string]string
	used      map[string]bool
	transient bool
	reads     int // API reads made, for tests and logs
}

func (c *secretCache) begin(ctx context.Context, versions map[string]string) *secretRead {
	return &secretRead{c: c, ctx: ctx, versions: versions, used: map[string]bool{}}
}

// get returns one key of a Secret; it is the Inputs.Secret of a Build.
func (r *secretRead) get(name, key string) ([]byte, error) {
	r.used[name] = true
	e, err := r.entry(name)
	if err != nil {
		return nil, err
	}
	if e.err != nil {
		return nil, e.err
	}
	v, ok := e.data[key]
	if !ok {
		//lint:ignore ST1005 "Secret" is the Kubernetes kind, spelled as the API spells it
		return nil, fmt.Errorf("Secret %q has no key %q", name, key)
	}
	return v, nil
}

func (r *secretRead) entry(name string) (secretEntry, error) {
	c := r.c
	c.mu.Lock()
	e, ok := c.entries[name]
	c.mu.Unlock()
	want := r.versions[name]
	// A cached copy is good while the operator has recorded no newer version; with no version
	// recorded yet (a new Secret) the copy read on first use stands until one appears.
	if ok && (want == "" || want == e.version) {
		return e, nil
	}
	var s corev1.Secret
	r.reads++
	err := c.reader.Get(r.ctx, client.ObjectKey{Namespace: c.ns, Name: name}, &s)
	switch {
	case err == nil:
		e = secretEntry{version: want, data: s.Data}
	case apierrors.IsNotFound(err):
		//lint:ignore ST1005 "Secret" is the Kubernetes kind, spelled as the API spells it
		e = secretEntry{version: want, err: fmt.Errorf("Secret %q does not exist in namespace %s", name, c.ns)}
	case apierrors.IsForbidden(err):
		// The operator adds a new Secret to the pod's Role when it sees the Account that
		// names it; until then the read is refused. Not cached: the next sync tries again.
		r.transient = true
		return secretEntry{}, notGrantedError{name, err}
	default:
		r.transient = true
		return secretEntry{}, fmt.Errorf("%w: reading Secret %q: %v", ErrSecretUnavailable, name, err)
	}
	c.mu.Lock()
	c.entries[name] = e
	c.mu.Unlock()
	return e, nil
}

// end forgets the Secrets this sync did not use, so that a rotated Secret that comes back
// into use is read again.
func (r *secretRead) end() {
	c := r.c
	c.mu.Lock()
	defer c.mu.Unlock()
	for name := range c.entries {
		if !r.used[name] {
			delete(c.entries, name)
		}
	}
}

// notGrantedError is a read of Secret name refused by the API server (err): ErrSecretNotGranted.
type notGrantedError struct {
	name string
	err  error
}

func (e notGrantedError) Error() string {
	return fmt.Sprintf("Secret %q is not readable by this pod yet (the operator grants it once it sees the Account): %v", e.name, e.err)
}

func (e notGrantedError) Is(target error) bool {
	return target == ErrSecretNotGranted || target == ErrSecretUnavailable
}
