'use strict'
// STREAM receiver for the interop tests. It connects to a connector as a BTP client
// (ilp-plugin-btp), learns its address over IL-DCP, serves STREAM (ilp-protocol-stream), and
// prints JSON lines on stdout:
//   {"event":"ready","address":…,"assetCode":…,"assetScale":…,"destinationAccount":…,"sharedSecret":<base64>}
//   {"event":"packet","amount":"…"}            each fulfilled Prepare with a non-zero amount
//   {"event":"money","amount":"…","streamId":n,"streamTotal":"…"}  each STREAM money event
//   {"event":"closed","totalReceived":"…"}     the connection's total, when it closes
// It runs until SIGTERM/SIGINT, until stdin closes when --watch-stdin is "true", or until
// --max-lifetime-ms pass, so it never outlives a test for long.
//
// Usage: node stream-receiver.js --server btp+ws://:secret@127.0.0.1:PORT [--connect-timeout-ms 10000]
//        [--max-lifetime-ms 300000] [--watch-stdin false]

const crypto = require('crypto')
const BtpPlugin = require('ilp-plugin-btp')
const ILDCP = require('ilp-protocol-ildcp')
const { out, die, withTimeout, parseFlags, positiveInt, stopOn, applyStreamWorkaround, FULFILL } = require('./lib')

applyStreamWorkaround()
const { createServer } = require('ilp-protocol-stream')
const IlpPacket = require('ilp-packet')

const flags = parseFlags(process.argv.slice(2), {
  server: undefined,
  'connect-timeout-ms': '10000',
  'max-lifetime-ms': '300000',
  'watch-stdin': 'false'
})
const connectTimeout = positiveInt(flags, 'connect-timeout-ms')

async function main () {
  const plugin = new BtpPlugin({ server: flags.server, responseTimeout: connectTimeout })
  // Record what the connector delivers: wrap the data handler the STREAM server registers.
  const register = plugin.registerDataHandler.bind(plugin)
  plugin.registerDataHandler = (handler) => register(async (data) => {
    const reply = await handler(data)
    if (reply[0] === FULFILL) {
      const { amount } = IlpPacket.deserializeIlpPrepare(data)
      if (amount !== '0') out({ event: 'packet', amount })
    }
    return reply
  })

  await withTimeout(plugin.connect(), connectTimeout, `BTP connect to ${redact(flags.server)}`)
  const info = await withTimeout(ILDCP.fetch(plugin.sendData.bind(plugin)), connectTimeout, 'IL-DCP request')
  const server = await withTimeout(createServer({ plugin, serverSecret: crypto.randomBytes(32) }), connectTimeout, 'STREAM server start')
  server.on('connection', (conn) => {
    conn.on('stream', (stream) => {
      stream.setReceiveMax('18446744073709551615')
      // The connection adds an amount to its own total only after the stream's money event,
      // so report the stream's total here and the connection's when it closes.
      stream.on('money', (amount) => out({ event: 'money', amount, streamId: stream.id, streamTotal: stream.totalReceived }))
      stream.on('data', () => {}) // drain data so the stream never blocks
    })
    conn.on('close', () => out({ event: 'closed', totalReceived: conn.totalReceived }))
    conn.on('error', (err) => process.stderr.write(`stream-receiver: connection error: ${err.message}\n`))
  })
  const { destinationAccount, sharedSecret } = server.generateAddressAndSecret()
  out({
    event: 'ready',
    address: info.clientAddress,
    assetCode: info.assetCode,
    assetScale: info.assetScale,
    destinationAccount,
    sharedSecret: sharedSecret.toString('base64')
  })

  const stop = (why) => {
    process.stderr.write(`stream-receiver: stopping (${why})\n`)
    process.exit(0)
  }
  stopOn(flags, stop)
  await new Promise(() => {}) // serve until stopped
}

// redact hides the BTP secret in messages.
function redact (url) {
  return url.replace(/\/\/[^@/]*@/, '//***@')
}

main().catch((err) => die(err.message))
