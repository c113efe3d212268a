// Package ilphttp implements ILP-over-HTTP (RFC 35) links, the Go replacement of the JS
// `ilp-plugin-http` an ilp-connector account can use; its JS `options` are accepted unchanged.
//
// Two modes, chosen per account (`mode`, default "sync"):
//   - sync: the Prepare is POSTed as the body and the Fulfill or Reject is the body of the
//     200 response. This is what interledger-rs, rafiki, the Java connector and
//     ilp-plugin-http speak.
//   - async (the current RFC 35): the Prepare is POSTed with Callback-Url and Request-Id and
//     answered 202 Accepted; the reply is POSTed back to the callback URL with the same
//     Request-Id, retried on 5xx or no response, and only the first reply counts. Replies go
//     only to the origin of the peer's outgoing URL, and a Prepare repeated with the same
//     Request-Id is handled once.
//
// Each account that accepts packets (`incoming`) has its own HTTP server on its own port, as
// each ilp-plugin-http instance does; any path is accepted, so a peer may POST to
// /accounts/<name>/ilp like interledger-rs. Every outgoing request of the process shares one
// bounded, kept-alive connection pool. Auth is a bearer token (compared in constant time) or
// an HS256 JWT, per direction and per account.
package ilphttp
