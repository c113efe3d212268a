// Package interop holds the interoperability tests of ilpfleet's connector against the real
// JavaScript Interledger packages from npm (pinned in package.json and package-lock.json,
// installed by hack/npm-deps.sh): ilp-connector, ilp-plugin-btp, ilp-plugin-mini-accounts,
// ilp-plugin-http, ilp-protocol-stream and ilp-settlement-core. A STREAM sender and receiver (js/) pay each other across two connectors,
// each an `ilpfleet connector` or a JS ilp-connector, and the tests check the amounts delivered
// to the unit and the connectors' balances. Both implementations convert USD to EUR with their
// ecb backend, reading the same rates file from a loopback mirror of the ECB's (the one thing
// mocked: a public website). A settlement engine built on ilp-settlement-core
// (js/settlement-engine.js) settles with ilpfleet's Go mock engine across two ilpfleet
// connectors (RFC 38).
//
// The tests need node (>= 18) and npm; without them they fail and say so. They build the
// ilpfleet binary once per run. Run them with:
//
//	go test ./test/interop/ -v
package interop
