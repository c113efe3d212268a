'use strict'
// A settlement engine for the interop tests, built on the real ilp-settlement-core from npm
// (its startServer and memory store), that speaks the protocol of ilpfleet's Go mock engine
// (runtime/settlement/engine/mock). NO MONEY MOVES: to "settle", it sends the peer's engine
// {"type":"settlement","id":…,"amount":"<standard units>"} through the connectors
// (services.sendMessage), and it credits such a message from the peer's engine to its
// connector (services.creditSettlement) as if the amount had arrived on a ledger. Like the Go
// mock it settles at most --decimals decimal places, rounded down, so that settlement-core's
// leftovers are exercised.
//
// It prints JSON lines on stdout:
//   {"event":"ready","port":N}                                   listening on 127.0.0.1:N
//   {"event":"account","id":…}                                   the connector's POST /accounts
//   {"event":"settle","account":…,"amount":…,"settled":…,"id":…}  a settlement sent to the peer
//   {"event":"credit","account":…,"amount":…,"id":…}             a settlement of the peer, credited
// and settlement-core's log on stderr (DEBUG=settlement-core). It runs until SIGTERM/SIGINT,
// until stdin closes when --watch-stdin is "true", or until --max-lifetime-ms pass.
//
// Usage: node settlement-engine.js --port N --connector-url http://127.0.0.1:PORT
//        [--decimals 2] [--max-lifetime-ms 300000] [--watch-stdin false]
// ENGINE_PORT and CONNECTOR_URL stand in for --port and --connector-url.

const crypto = require('crypto')
const http = require('http')
const { startServer, createMemoryStore } = require('ilp-settlement-core')
const { out, die, withTimeout, parseFlags, positiveInt, stopOn } = require('./lib')

// settlement-core's own bignumber.js (9.x, nested under it; the top-level one is another
// major version): the amounts it passes and takes back must be of its class.
const BigNumber = require(require.resolve('bignumber.js', { paths: [require.resolve('ilp-settlement-core')] }))

const flags = parseFlags(process.argv.slice(2), {
  port: process.env.ENGINE_PORT,
  'connector-url': process.env.CONNECTOR_URL,
  decimals: '2',
  'max-lifetime-ms': '300000',
  'watch-stdin': 'false'
})
const port = positiveInt(flags, 'port')
const decimals = Number(flags.decimals)
if (!Number.isInteger(decimals) || decimals < 0 || decimals > 255) die(`--decimals must be an integer from 0 to 255, got ${JSON.stringify(flags.decimals)}`, 2)
if (!/^https?:\/\/[^/]+$/.test(flags['connector-url'])) die(`--connector-url must be http(s)://host:port, got ${JSON.stringify(flags['connector-url'])}`, 2)

// AMOUNT is what the Go mock sends: a non-negative decimal in standard units.
const AMOUNT = /^[0-9]+(\.[0-9]+)?$/

// createEngine is the settlement engine: settlement-core calls settle with what the connector
// asked (plus leftovers) and keeps whatever settle does not return as settled.
const createEngine = (decimals) => async (services) => ({
  async setupAccount (accountId) {
    out({ event: 'account', id: accountId })
  },

  async settle (accountId, amount) {
    const settled = amount.decimalPlaces(decimals, BigNumber.ROUND_DOWN)
    if (!settled.isGreaterThan(0)) return new BigNumber(0)
    const id = crypto.randomUUID()
    // toFixed, not toString: bignumber.js writes 1e-7 for 0.0000001, which a decimal parser
    // need not take.
    await services.sendMessage(accountId, { type: 'settlement', id, amount: settled.toFixed() })
    out({ event: 'settle', account: accountId, amount: amount.toFixed(), settled: settled.toFixed(), id })
    return settled
  },

  async handleMessage (accountId, message) {
    if (!message || message.type !== 'settlement' || typeof message.id !== 'string' || message.id === '') {
      throw new Error(`unknown message (want {"type":"settlement","id":…}): ${JSON.stringify(message)}`)
    }
    if (typeof message.amount !== 'string' || !AMOUNT.test(message.amount)) {
      throw new Error(`settlement amount must be a non-negative decimal string, got ${JSON.stringify(message.amount)}`)
    }
    const amount = new BigNumber(message.amount)
    out({ event: 'credit', account: accountId, amount: amount.toFixed(), id: message.id })
    // Not awaited: settlement-core retries a credit the connector does not answer for up to
    // an hour, while the peer waits for this reply inside an ILP Prepare that expires.
    Promise.resolve(services.creditSettlement(accountId, amount, message.id))
      .catch((err) => process.stderr.write(`settlement-engine: credit ${message.id}: ${err.stack || err}\n`))
    return { type: 'ack', id: message.id }
  }
})

// onLoopback makes the next server.listen(port) bind 127.0.0.1 (settlement-core calls
// app.listen(port), which binds every interface) and hands the server to onServer.
function onLoopback (onServer) {
  const listen = http.Server.prototype.listen
  http.Server.prototype.listen = function (...args) {
    http.Server.prototype.listen = listen
    if (args.length === 1 && (typeof args[0] === 'number' || typeof args[0] === 'string')) args.push('127.0.0.1')
    onServer(this)
    return listen.apply(this, args)
  }
  return () => { http.Server.prototype.listen = listen }
}

async function main () {
  const restore = onLoopback((server) => {
    server.once('listening', () => out({ event: 'ready', port: server.address().port }))
    server.once('error', (err) => die(`listen on 127.0.0.1:${port}: ${err.message}`))
  })
  let engine
  try {
    engine = await startServer(createEngine(decimals), createMemoryStore(), { connectorUrl: flags['connector-url'], port })
  } finally {
    restore()
  }
  // The memory store holds nothing worth a long goodbye: shutdown (which waits for the
  // connector's keep-alive connections) gets a second.
  const stop = async (why) => {
    process.stderr.write(`settlement-engine: stopping (${why})\n`)
    await withTimeout(engine.shutdown(), 1000, 'shutdown').catch(() => {})
    process.exit(0)
  }
  stopOn(flags, stop)
}

main().catch((err) => die(err.stack || err.message))
