'use strict'
// Shared helpers of the interop peers (stream-sender.js, stream-receiver.js,
// settlement-engine.js): output as JSON lines, bounded waits, flag parsing, when to stop,
// packet recording, and the Node >= 18 workaround for ilp-protocol-stream 2.7.1.

const { Readable } = require('stream')
const IlpPacket = require('ilp-packet')

// out prints one JSON object as one line on stdout: the only thing the Go tests read.
function out (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

// die reports a failure on stderr and as a JSON line, then exits non-zero.
function die (message, code = 1) {
  process.stderr.write(`${process.argv[1].split('/').pop()}: ${message}\n`)
  out({ event: 'error', message })
  process.exit(code)
}

// withTimeout rejects with a message naming what was awaited when ms pass first.
function withTimeout (promise, ms, what) {
  let timer
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

// parseFlags reads --name value pairs. spec maps each flag to its default (undefined means
// required); unknown flags and missing values are errors.
function parseFlags (argv, spec) {
  const flags = {}
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i].replace(/^--/, '')
    if (!argv[i].startsWith('--') || !(name in spec)) die(`unknown flag ${argv[i]} (known: ${Object.keys(spec).map(k => '--' + k).join(' ')})`, 2)
    if (i + 1 >= argv.length) die(`flag ${argv[i]} needs a value`, 2)
    flags[name] = argv[i + 1]
  }
  for (const [name, def] of Object.entries(spec)) {
    if (flags[name] === undefined) {
      if (def === undefined) die(`flag --${name} is required`, 2)
      flags[name] = def
    }
  }
  return flags
}

// positiveInt parses a flag holding a positive integer of milliseconds or units.
function positiveInt (flags, name) {
  const v = Number(flags[name])
  if (!Number.isSafeInteger(v) || v <= 0) die(`--${name} must be a positive integer, got ${JSON.stringify(flags[name])}`, 2)
  return v
}

// applyStreamWorkaround makes ilp-protocol-stream 2.7.1 usable on Node >= 18. Its
// DataAndMoneyStream (a Duplex) assigns this.closed, which Node's Readable defines as a
// getter only, so the assignment throws (interledgerjs/interledgerjs#284). An own accessor on
// the subclass prototype, backed by a private field, shadows Node's getter for that class only;
// Node's stream internals keep their state in _readableState/_writableState, not in .closed.
function applyStreamWorkaround () {
  const { DataAndMoneyStream } = require('ilp-protocol-stream/dist/src/stream')
  const proto = DataAndMoneyStream.prototype
  const own = Object.getOwnPropertyDescriptor(proto, 'closed')
  if (own && own.set) return // already applied, or a fixed version
  const inherited = Object.getOwnPropertyDescriptor(Readable.prototype, 'closed')
  if (inherited && !inherited.set) {
    const field = Symbol('ilpStreamClosed')
    Object.defineProperty(proto, 'closed', {
      configurable: true,
      enumerable: false,
      get () { return this[field] === true },
      set (v) { this[field] = Boolean(v) }
    })
  }
}

// recordPackets wraps a function that sends a serialized ILP Prepare and resolves to the
// serialized reply, calling onResult(prepareAmount, replyType, reply) for each reply. Reply
// types are IlpPacket.Type.TYPE_ILP_FULFILL (13) and TYPE_ILP_REJECT (14).
function recordPackets (sendData, onResult) {
  return async (data) => {
    const reply = await sendData(data)
    try {
      const prepare = IlpPacket.deserializeIlpPrepare(data)
      onResult(prepare, reply[0], reply)
    } catch (err) {
      process.stderr.write(`record: cannot decode a packet: ${err.message}\n`)
    }
    return reply
  }
}

const FULFILL = IlpPacket.Type.TYPE_ILP_FULFILL
const REJECT = IlpPacket.Type.TYPE_ILP_REJECT

// stopOn calls stop(why) on SIGTERM or SIGINT, when stdin closes if --watch-stdin is "true",
// and once --max-lifetime-ms have passed, so that a peer never outlives its test for long.
function stopOn (flags, stop) {
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
  if (flags['watch-stdin'] === 'true') {
    process.stdin.on('end', () => stop('stdin closed')).resume()
  }
  setTimeout(() => stop('max lifetime reached'), positiveInt(flags, 'max-lifetime-ms'))
}

module.exports = { out, die, withTimeout, parseFlags, positiveInt, stopOn, applyStreamWorkaround, recordPackets, FULFILL, REJECT, IlpPacket }
