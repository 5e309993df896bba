#!/usr/bin/env node
// Interop harness: the real npm `yjs` + `y-websocket` client (WebsocketProvider, default
// options), driven by the same JSON-lines protocol as ysio-client.mjs (see tests/js_client.py).
//
// Start:   node --experimental-websocket tests/js/yws-client.mjs '{"url":"http://127.0.0.1:8080","room":"loop:<uuid>","auth":{"token":"..."}}'
//          The provider connects to <url>/ws/<room> (http becomes ws) with `auth` as its
//          query `params`.
// Commands: the document commands of doc-commands.mjs (set-meta, toggle-step, set-step-attr,
//          set-chord, set-block, delete-block), awareness {state}, set-auth {auth} (params of
//          the next connect), disconnect / connect, dump, ping, close.
// Events:  {"event":"ready","clientId":n}; {"event":"connect"} / {"event":"disconnect"};
//          {"event":"synced"} (the server's sync step 2 applied); {"event":"close","code","reason"}
//          on every closed connection; {"event":"closed-for-good","code","reason"} when the
//          provider stops reconnecting (a 4400-4499 code); {"event":"permission-denied","reason"}
//          (console.warn of the provider); {"event":"awareness","states":{...}};
//          {"event":"update"}; {"event":"fatal","message"}.

import readline from 'node:readline'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import { dump, runDocCommand } from './doc-commands.mjs'

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
// The provider logs a permission-denied auth message with console.warn: report it.
const warn = console.warn
console.warn = (...args) => {
  const text = args.join(' ')
  if (text.startsWith('Permission denied')) out({ event: 'permission-denied', reason: text })
  else warn(...args)
}

const doc = new Y.Doc()
const serverUrl = String(config.url).replace(/^http/, 'ws').replace(/\/$/, '') + '/ws'
const provider = new WebsocketProvider(serverUrl, config.room, doc, {
  connect: config.autoConnect !== false,
  params: config.auth || {}
})
const awareness = provider.awareness

provider.on('status', ({ status }) => {
  if (status === 'connected') out({ event: 'connect' })
  else if (status === 'disconnected') out({ event: 'disconnect' })
})
provider.on('sync', (synced) => { if (synced) out({ event: 'synced' }) })
provider.on('connection-close', (event) => {
  out({ event: 'close', code: event ? event.code : null, reason: event ? event.reason : null })
})
provider.on('closed', ({ code, reason }) => out({ event: 'closed-for-good', code, reason }))
doc.on('update', (_update, origin) => {
  if (origin === provider) out({ event: 'update' })
})
awareness.on('change', () => out({ event: 'awareness', states: statesObject() }))

out({ event: 'ready', clientId: doc.clientID })

function statesObject () {
  const states = {}
  for (const [clientId, state] of awareness.getStates()) states[clientId] = state
  return states
}

const ORIGIN = 'harness' // any origin but the provider: sent as a sync update

function run (c) {
  const edited = runDocCommand(doc, c, ORIGIN)
  if (edited !== undefined) return edited
  switch (c.cmd) {
    case 'awareness':
      awareness.setLocalState(c.state ?? null)
      return {}
    case 'set-auth':
      provider.params = c.auth || {}
      return {}
    case 'disconnect':
      provider.disconnect()
      return {}
    case 'connect':
      provider.connect()
      return {}
    case 'dump':
      out({ event: 'dump', ref: c.ref, content: dump(doc, kind), clientId: doc.clientID, states: statesObject() })
      return {}
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
close()
