'use strict'
// STREAM sender for the interop tests. It connects to a connector with a new BTP client plugin
// (ilp-plugin-btp; one plugin per STREAM connection, since the STREAM client disconnects it on
// close), learns its address over IL-DCP, pays --amount source units to a STREAM receiver, and
// prints JSON lines on stdout:
//   {"event":"ildcp","address":…,"assetCode":…,"assetScale":…}
//   {"event":"sent","totalSent":"…","totalDelivered":"…","packets":["…",…],"rejects":{"F08":n,…}}
// where packets are the source amounts of the fulfilled Prepares (non-zero only), in order.
// It exits 0 when the whole amount was sent, non-zero with a message on stderr (and an
// {"event":"error"} line) otherwise, and within --timeout-ms in every case.
//
// Usage: node stream-sender.js --server btp+ws://:token@127.0.0.1:PORT --destination ADDR
//        --secret BASE64 --amount N [--timeout-ms 30000] [--connect-timeout-ms 10000]

const BtpPlugin = require('ilp-plugin-btp')
const ILDCP = require('ilp-protocol-ildcp')
const { out, die, withTimeout, parseFlags, positiveInt, applyStreamWorkaround, recordPackets, FULFILL, REJECT, IlpPacket } = require('./lib')

applyStreamWorkaround()
const { createConnection } = require('ilp-protocol-stream')

const flags = parseFlags(process.argv.slice(2), {
  server: undefined,
  destination: undefined,
  secret: undefined,
  amount: undefined,
  'timeout-ms': '30000',
  'connect-timeout-ms': '10000'
})
const connectTimeout = positiveInt(flags, 'connect-timeout-ms')
const timeout = positiveInt(flags, 'timeout-ms')
if (!/^[1-9][0-9]*$/.test(flags.amount)) die(`--amount must be a positive integer, got ${JSON.stringify(flags.amount)}`, 2)
const sharedSecret = Buffer.from(flags.secret, 'base64')
if (sharedSecret.length !== 32) die(`--secret must be 32 bytes in base64, got ${sharedSecret.length} bytes`, 2)

const packets = [] // source amounts of fulfilled Prepares
const rejects = {} // reject code -> count
let lastReject = null

async function main () {
  const plugin = new BtpPlugin({ server: flags.server, responseTimeout: timeout })
  await withTimeout(plugin.connect(), connectTimeout, `BTP connect to ${redact(flags.server)}`)
  const info = await withTimeout(ILDCP.fetch(plugin.sendData.bind(plugin)), connectTimeout, 'IL-DCP request')
  out({ event: 'ildcp', address: info.clientAddress, assetCode: info.assetCode, assetScale: info.assetScale })

  plugin.sendData = recordPackets(plugin.sendData.bind(plugin), (prepare, type, reply) => {
    if (type === FULFILL && prepare.amount !== '0') packets.push(prepare.amount)
    if (type === REJECT) {
      const r = IlpPacket.deserializeIlpReject(reply)
      rejects[r.code] = (rejects[r.code] || 0) + 1
      lastReject = `${r.code} from ${r.triggeredBy || '(nobody)'}: ${r.message}`
    }
  })

  const conn = await withTimeout(
    createConnection({ plugin, destinationAccount: flags.destination, sharedSecret }),
    connectTimeout, `STREAM connection to ${flags.destination}`)
  const stream = conn.createStream()
  try {
    await withTimeout(stream.sendTotal(flags.amount), timeout, `STREAM payment of ${flags.amount}`)
  } catch (err) {
    die(`${err.message} (sent ${conn.totalSent}, delivered ${conn.totalDelivered}; last reject: ${lastReject || 'none'})`)
  }
  const result = {
    event: 'sent',
    totalSent: conn.totalSent,
    totalDelivered: conn.totalDelivered,
    sourceAssetCode: conn.sourceAssetCode,
    sourceAssetScale: conn.sourceAssetScale,
    destinationAssetCode: conn.destinationAssetCode,
    destinationAssetScale: conn.destinationAssetScale,
    packets,
    rejects
  }
  await withTimeout(conn.end(), connectTimeout, 'STREAM close').catch((err) => process.stderr.write(`stream-sender: ${err.message}\n`))
  out(result)
  process.exit(0)
}

// redact hides the BTP secret in messages.
function redact (url) {
  return url.replace(/\/\/[^@/]*@/, '//***@')
}

setTimeout(() => die(`gave up after ${timeout + 2 * connectTimeout} ms`), timeout + 2 * connectTimeout).unref()
main().catch((err) => die(err.message))
