#!/usr/bin/env node
// Interop harness: the real npm `yjs` + `y-socket.io` client (SocketIOProvider), driven by a
// JSON-lines protocol so pytest can orchestrate it (see tests/js_client.py).
//
// Start:   node tests/js/ysio-client.mjs '{"url":"http://127.0.0.1:8080","room":"loop:<uuid>","auth":{"token":"..."}}'
//          (or give that JSON object as the first line of stdin).
// Options in the start object: url, room, auth ({token} | {shareToken}), path (Engine.IO path,
//          default "/socket.io"), autoConnect (default true), resyncInterval (default -1).
// stdin:   one command per line, e.g. {"cmd":"set-meta","key":"name","value":"x","ref":1}.
//          Every command is answered with {"event":"done","cmd":...,"ref":...} (ref echoed when
//          given) or {"event":"command-error","cmd":...,"ref":...,"message":...}.
// stdout:  one JSON event per line (below). Diagnostics go to stderr.
//
// Commands:
//   set-meta {key, value}                 meta.set(key, value); value null deletes the key
//   toggle-step {step, soundId, row?, pitch?, note?, velocity?, duration16?, on?}
//                                         steps[step_key] = Y.Map{...} or delete (on: force)
//   set-step-attr {step, soundId, row?, pitch?, note?, attr, value}
//                                         one attribute of an existing step's Y.Map
//   set-chord {bar, chord, roman?, root?, quality?}   chords[String(bar)] = {...}; chord null deletes
//   set-block {id, loopId, startBar, duration, color?} / delete-block {id}   (song timeline)
//   awareness {state}                     awareness.setLocalState(state) (null: remove)
//   set-auth {auth}                       auth sent on the next (re)connect (token refresh)
//   disconnect / connect                  provider.disconnect() / provider.connect()
//   emit {event, args}                    raw socket.emit(event, ...args); an argument
//                                         {"binary": "<base64>"} is sent as binary
//   dump                                  prints {"event":"dump","content":{meta, chords, steps} | {meta, timeline}}
//   ping                                  just "done" (a barrier)
//   close                                 provider.destroy(), prints {"event":"closed"}, exits 0
// Events:
//   {"event":"ready","clientId":n}        the provider exists (connecting)
//   {"event":"connect"} / {"event":"disconnect","reason":...}
//   {"event":"synced"}                    connected, the server's sync-step-1 answered AND an
//                                         extra sync-step-1 round trip applied (so the doc
//                                         holds everything the server had)
//   {"event":"connect_error","message":...,"data":...}
//   {"event":"error", code, message, ...} the server's custom `error` event (payload spread)
//   {"event":"presence","members":[...]} / {"event":"role-changed","role":...}
//   {"event":"server-shutdown","message":...}
//   {"event":"server-event","name":...,"args":[...]}   any other non-protocol server event
//   {"event":"awareness","states":{clientId: state}}   on every awareness change (all states)
//   {"event":"update"}                    the doc changed because of the server (remote update)
//   {"event":"fatal","message":...}       harness failure (then exit 1)

import readline from 'node:readline'
import * as Y from 'yjs'
import { SocketIOProvider } from 'y-socket.io'
import { dump, runDocCommand } from './doc-commands.mjs'

const PROTOCOL_EVENTS = new Set(['sync-step-1', 'sync-update', 'awareness-update'])
const CUSTOM_EVENTS = new Set(['error', 'presence', 'role-changed', 'server-shutdown'])

function out (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

function fatal (message) {
  out({ event: 'fatal', message: String(message) })
  process.exit(1)
}

process.on('uncaughtException', (err) => fatal(err && err.stack ? err.stack : err))
process.on('unhandledRejection', (err) => fatal(err && err.stack ? err.stack : err))

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
const lines = rl[Symbol.asyncIterator]()

let config
if (process.argv[2]) {
  config = JSON.parse(process.argv[2])
} else {
  const first = await lines.next()
  if (first.done) fatal('no configuration given (argv[2] or the first stdin line)')
  config = JSON.parse(first.value)
}
if (!config.url || !config.room) fatal('configuration needs url and room')

const kind = String(config.room).split(':')[0]
let currentAuth = config.auth || {}

const doc = new Y.Doc()
const socketIoOptions = {
  // A function, so every automatic reconnect sends the current auth (token refresh).
  auth: (cb) => cb(currentAuth)
}
if (config.path) socketIoOptions.path = config.path

const provider = new SocketIOProvider(
  config.url,
  config.room,
  doc,
  {
    autoConnect: config.autoConnect !== false,
    disableBc: true, // everything goes through the server
    resyncInterval: config.resyncInterval ?? -1
  },
  socketIoOptions
)
const socket = provider.socket
const awareness = provider.awareness

// --- synced: the provider's own `synced` flips when the server's sync-step-1 arrives, which
// socket.io-client delivers *before* `connect` (i.e. before the provider even sent its own
// sync-step-1). So we add one more sync-step-1 round trip and report synced when both are done.
let probeApplied = false
let syncedReported = false
function maybeSynced () {
  if (!syncedReported && probeApplied && provider.synced && socket.connected) {
    syncedReported = true
    out({ event: 'synced' })
  }
}
socket.on('connect', () => {
  // Registered after the provider's own handler: its sync-step-1 goes first.
  out({ event: 'connect' })
  probeApplied = false
  syncedReported = false
  socket.emit('sync-step-1', Y.encodeStateVector(doc), (update) => {
    Y.applyUpdate(doc, new Uint8Array(update), provider)
    probeApplied = true
    maybeSynced()
  })
})
provider.on('synced', () => maybeSynced())
socket.on('disconnect', (reason) => {
  probeApplied = false
  syncedReported = false
  out({ event: 'disconnect', reason })
})
socket.on('connect_error', (err) => {
  out({ event: 'connect_error', message: err && err.message, data: (err && err.data) ?? null })
})

// --- our custom server events
socket.on('error', (payload) => out({ ...(isObject(payload) ? payload : { message: payload }), event: 'error' }))
socket.on('presence', (payload) => out({ event: 'presence', members: payload && payload.members }))
socket.on('role-changed', (payload) => out({ event: 'role-changed', role: payload && payload.role }))
socket.on('server-shutdown', (payload) => out({ event: 'server-shutdown', message: payload && payload.message }))
socket.onAny((name, ...args) => {
  if (PROTOCOL_EVENTS.has(name) || CUSTOM_EVENTS.has(name)) return
  out({ event: 'server-event', name, args: args.filter((a) => typeof a !== 'function').map(plain) })
})

// --- document and awareness
doc.on('update', (_update, origin) => {
  if (origin === provider) out({ event: 'update' })
})
awareness.on('change', () => out({ event: 'awareness', states: statesObject() }))

out({ event: 'ready', clientId: doc.clientID })

// --- commands
function isObject (v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

function plain (v) {
  if (v instanceof Uint8Array || Buffer.isBuffer(v) || v instanceof ArrayBuffer) {
    return { binary: Buffer.from(v).toString('base64') }
  }
  return v
}

function statesObject () {
  const states = {}
  for (const [clientId, state] of awareness.getStates()) states[clientId] = state
  return states
}

const ORIGIN = 'harness' // any origin but the provider: sent as sync-update

function run (c) {
  const edited = runDocCommand(doc, c, ORIGIN)
  if (edited !== undefined) return edited
  switch (c.cmd) {
    case 'awareness': {
      awareness.setLocalState(c.state ?? null)
      return {}
    }
    case 'set-auth': {
      currentAuth = c.auth || {}
      return {}
    }
    case 'disconnect': {
      provider.disconnect()
      return {}
    }
    case 'connect': {
      provider.connect()
      return {}
    }
    case 'dump': {
      out({ event: 'dump', ref: c.ref, content: dump(doc, kind), clientId: doc.clientID, states: statesObject() })
      return {}
    }
    case 'emit': {
      // Raw emit for tests: {"binary": "<base64>"} arguments become Uint8Array attachments.
      const args = (c.args || []).map((a) => (isObject(a) && typeof a.binary === 'string' ? new Uint8Array(Buffer.from(a.binary, 'base64')) : a))
      socket.emit(c.event, ...args)
      return {}
    }
    case 'ping':
      return {}
    default:
      throw new Error(`unknown command ${JSON.stringify(c.cmd)}`)
  }
}

let closed = false
function close () {
  if (closed) return
  closed = true
  provider.destroy()
  out({ event: 'closed' })
  // Let stdout drain, then leave (the socket.io Manager may keep timers alive).
  process.stdout.write('', () => process.exit(0))
}

for await (const line of lines) {
  if (!line.trim()) continue
  let c
  try {
    c = JSON.parse(line)
  } catch (err) {
    out({ event: 'command-error', message: `bad JSON: ${err.message}` })
    continue
  }
  if (c.cmd === 'close') {
    close()
    break
  }
  try {
    const result = run(c)
    out({ event: 'done', cmd: c.cmd, ref: c.ref, ...result })
  } catch (err) {
    out({ event: 'command-error', cmd: c.cmd, ref: c.ref, message: err.message })
  }
}
// stdin closed without "close": clean up as well.
close()
