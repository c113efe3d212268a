// Package admin is the connector's admin HTTP API and its Prometheus metrics endpoint,
// a drop-in for the JS ilp-connector's admin API (src/services/admin-api.ts, v23):
// the same routes, the same JSON shapes, amounts as strings and unbounded limits printed
// "-Infinity" / "Infinity" as JS prints them, bound to 127.0.0.1:7780 by default and,
// as in JS, without authentication: never expose it outside the pod or host.
//
// Routes (JS unless noted):
//
//	GET    /status        {balances, connected, localRoutingTable}
//	GET    /routing       {routingTableId, currentEpoch, localRoutingTable, forwardingRoutingTable, routingLog, peers}
//	GET    /accounts      {address, accounts: {id: {info, connected, adminInfo}}}
//	GET    /balance       {accounts: {id: {balance, minimum, maximum}}}
//	POST   /balance       {"accountId", "amountDiff"} → 204
//	GET    /rates         {srcAccount: {dstAccount: rate}}  (?from=<account>: that row only, ours)
//	GET    /rates/backend {backend, rates, source}          (ours: the backend's asset rates and their freshness)
//	GET    /stats         prom-client getMetricsAsJSON() of the ilp_connector_* families
//	GET    /alerts        {alerts: [...]}
//	DELETE /alerts/:id    204
//	GET    /metrics       Prometheus text format
//	GET    /healthz       200 {"status":"ok"} once serving (ours, for Kubernetes probes)
//
// Where this API differs from JS, on purpose: errors are JSON {"error", "message"} with
// a 4xx status saying whose fault it is (JS answers text/plain, and 500 for most bad
// requests); a method that the path does not support is 405 with an Allow header (JS: 404);
// an unknown account in POST /balance is 404 and a refused change 409 (JS: 500); JSON
// object keys keyed by account or prefix are sorted (JS keeps insertion order);
// GET /accounts/:id (plugin admin info) and POST /addAccount are not offered: accounts
// come from the configuration sources, and no Go link has plugin admin info.
//
// GET /rates is JS's matrix of every pair of distinct accounts: the rate the connector
// converts a packet's amount with from the one to the other (destination base units per
// source base unit, spread and asset scales applied; one-to-one: (1−spread)·10^(dstScale−
// srcScale)), taken from the connector's own converter and written as a JSON number from its
// exact decimal string. It differs from JS in three ways: a pair the backend cannot price now
// (an asset missing from the static or ecb table, ecb rates not fetched yet or stale) is left
// out of its row, where JS answers 500 for the whole request; ?from=<account> answers one row
// (404 for an unknown account); and above 200 accounts (maxRatesMatrixAccounts) the whole
// matrix, which grows as N², is refused with a 400 that says to ask row by row. Numbers print as
// decimals (0.0000001 where JS prints 1e-7): the same values to a JSON parser.
package admin
