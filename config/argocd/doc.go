// Package argocd holds the Argo CD health checks of the ilp.ilpfleet.dev kinds, as Lua scripts
// laid out like argo-cd's resource_customizations (health/<group>/<Kind>/health.lua, with
// health_test.yaml and testdata/), the argocd-cm patch that installs them, and the tests that
// run every script against its fixtures in the Lua VM Argo CD itself uses.
//
// The package has no Go API: it exists so that `go test ./...` checks the scripts and the
// freshness of argocd-cm.yaml.
package argocd
