package kube

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// secretReader serves Secrets from a map and counts reads; forbidden names fail as RBAC does.
type secretReader struct {
	client.Reader
	secrets   map[string]string // name → value of key "k"
	forbidden map[string]bool
	reads     int
}

func (r *secretReader) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	r.reads++
	gr := schema.GroupResource{Resource: "secrets"}
	if r.forbidden[key.Name] {
		return apierrors.NewForbidden(gr, key.Name, errors.New("no"))
	}
	v, ok := r.secrets[key.Name]
	if !ok {
		return apierrors.NewNotFound(gr, key.Name)
	}
	*obj.(*corev1.Secret) = corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: key.Name}, Data: map[string][]byte{"k": []byte(v)}}
	return nil
}

// The cache reads a Secret again only when the operator's recorded version moves; a missing
// Secret is remembered until then; a forbidden one is retried and marks the sync transient.
func TestSecretCache(t *testing.T) {
	r := &secretReader{secrets: map[string]string{"s": "one"}, forbidden: map[string]bool{}}
	c := newSecretCache(r, "ns")
	ctx := context.Background()
	steps := []struct {
		name      string
		versions  map[string]string
		secret    string
		mutate    func()
		want      string // value, or an error substring after "!"
		reads     int    // total API reads after the step
		transient bool
	}{
		{"first read", nil, "s", nil, "one", 1, false},
		{"cached, no version yet", nil, "s", func() { r.secrets["s"] = "two" }, "one", 1, false},
		{"version recorded: read again", map[string]string{"s": "5"}, "s", nil, "two", 2, false},
		{"same version: cached", map[string]string{"s": "5"}, "s", func() { r.secrets["s"] = "three" }, "two", 2, false},
		{"rotated", map[string]string{"s": "6"}, "s", nil, "three", 3, false},
		{"missing", nil, "gone", nil, `!Secret "gone" does not exist`, 4, false},
		{"missing stays missing until a version", nil, "gone", func() { r.secrets["gone"] = "x" }, "!does not exist", 4, false},
		{"created and recorded", map[string]string{"gone": "1"}, "gone", nil, "x", 5, false},
		{"forbidden", nil, "new", func() { r.forbidden["new"] = true }, "!not readable by this pod yet", 6, true},
		{"forbidden is retried", nil, "new", func() { r.forbidden["new"] = false; r.secrets["new"] = "n" }, "n", 7, false},
	}
	for _, st := range steps {
		if st.mutate != nil {
			st.mutate()
		}
		rd := c.begin(ctx, st.versions)
		v, err := rd.get(st.secret, "k")
		got := string(v)
		if err != nil {
			got = "!" + err.Error()
		}
		if (strings.HasPrefix(st.want, "!") && !strings.Contains(got, st.want[1:])) || (!strings.HasPrefix(st.want, "!") && got != st.want) {
			t.Fatalf("%s: got %q, want %q", st.name, got, st.want)
		}
		if r.reads != st.reads || rd.transient != st.transient {
			t.Fatalf("%s: %d reads (want %d), transient %v", st.name, r.reads, st.reads, rd.transient)
		}
		if !strings.HasPrefix(st.want, "!") {
			if _, err := rd.get(st.secret, "nokey"); err == nil || r.reads != st.reads {
				t.Fatalf("%s: a missing key must be an error from the cached copy (%v, %d reads)", st.name, err, r.reads)
			}
		}
	}
	// A Secret no longer used is forgotten, so it is read again when it comes back.
	rd := c.begin(ctx, nil)
	rd.end()
	if len(c.entries) != 0 {
		t.Fatalf("entries kept: %v", c.entries)
	}
}
