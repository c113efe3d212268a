// Package churn holds the connector runtime's bounded churn tests: one in-process connector
// (runtime/connector) is put through many short lifecycles of the things a long-running
// production connector sees come and go — BTP children of a mini-accounts account, a BTP
// client account whose server restarts, ILP-over-HTTP requests (sync and async) that are
// fulfilled, time out or are abandoned by their client, config reloads that add and remove
// accounts of every kind with packets in flight, CCP peers and their routes, and accounts with
// settlement engines — and then, once the runtime has settled, compared with what it held
// after its warm-up.
//
// Why: a leak of one goroutine, descriptor, metric series or map entry per connection, packet
// or reload is invisible in a short functional test and fatal after weeks in production. Each
// phase therefore repeats its lifecycle 100 to 600 times, so that a per-iteration leak is far
// above the slack the comparison allows, while the whole package stays well under a minute
// under -race on two cores. Every wait is bounded (internal/testwait); nothing asserts on time.
//
// What is compared with the baseline: goroutines (runtime.NumGoroutine, a small slack for
// pools; a failure logs the goroutine profile), open file descriptors (/proc/self/fd), the
// live heap after a GC (a generous bound: it catches megabytes, not bytes), the connector's
// Prometheus series by metric and account (exact: a removed account's series must be gone,
// as middleware.Metrics.Forget does for the packet metrics and as the JS connector never
// needed, its accounts being fixed) and the sizes the exported APIs show, exactly: accounts,
// routes, CCP peers, the forwarding table and its log, recorded settlements and store keys.
// What is kept on purpose is expected explicitly: a mini-accounts child's token binding (one
// store key per distinct auth_username, as ilp-plugin-mini-accounts keeps in the JS store).
//
// CHURN_LOG=1 shows the connector's log; CHURN_PROFILE=1 logs the goroutine profile at every
// baseline and check, to see what a phase leaves behind. The package has no non-test code:
// this file only documents it.
package churn
