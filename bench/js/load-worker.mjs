#!/usr/bin/env node
// Load worker of the stock-client benchmark (bench/stock.py): many editors, each a real npm
// `yjs` Y.Doc with the stock provider of the server under test, in one Node process.
//   ours / ysocketio: y-socket.io's SocketIOProvider, default options (socket.io-client offers
//                     permessage-deflate), except disableBc: editors of one room share this
//                     process, and BroadcastChannel would let them talk without the server.
//   hocuspocus:       @hocuspocus/provider's HocuspocusProvider (ws as the WebSocket of Node 20).
//   yws:              y-websocket's WebsocketProvider, default options but disableBc (as above)
//                     and ws as the WebSocket of Node 20; auth as its query params.
// Every editor has one awareness state. A room never spans two workers, so the send and the
// receive time of an edit come from one clock (performance.now()).
//
// stdin, one JSON line each: first the configuration
//   {"target": "ours"|"ysocketio"|"hocuspocus"|"yws", "url": "...", "editors": M,
//    "rooms": [{"name": "loop:<uuid>" | "room-3", "auth": {"token": "..."}}]}
// then commands, each answered on stdout with one JSON line:
//   {"cmd":"connect","timeout":s}  -> {"event":"connected","connect_ms":[...],"failed":n}
//       creates every editor's provider at once; connect_ms: provider created -> first sync
//   {"cmd":"load","rate":F,"warmup":s,"duration":s,"grace":s}
//       -> {"event":"loaded", ...} (see result() below); edits are scheduled open loop, each
//       editor at F edits/s with a random phase; edits scheduled in the measured window count
//   {"cmd":"check"} -> {"event":"checked","rooms":n,"converged":n,"problems":[...]}
//   {"cmd":"churn","sockets":n,"rooms":k,"gap":s,"timeout":s} (the soak, bench/soak.py)
//       -> {"event":"churned","reconnected":n,"reopened":k,"failed":n}: n random editors of
//       other rooms leave and join again with a new Y.Doc; every editor of k random rooms
//       leaves, and after gap seconds (the server unloads an empty room) they join again
//   {"cmd":"close"} -> {"event":"closed"}, exit 0
// An edit is map "bench" key e<editor>s<seq % 64> := "<room>:<editor>:<seq>" in one
// transaction; a receiver's Y.Map observer reads the value of every changed key.

import readline from 'node:readline'
import { performance } from 'node:perf_hooks'
import * as Y from 'yjs'
import { SocketIOProvider } from 'y-socket.io'
import { HocuspocusProvider } from '@hocuspocus/provider'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'

const SLOTS = 64

function out (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

process.on('uncaughtException', (err) => { out({ event: 'fatal', message: String(err && err.stack) }); process.exit(1) })
process.on('unhandledRejection', (err) => { out({ event: 'fatal', message: String(err && err.stack) }); process.exit(1) })

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
const lines = rl[Symbol.asyncIterator]()
const config = JSON.parse((await lines.next()).value)

const sent = new Map() // token -> {t, measured, editor (global index), seen: Set of receivers}
const latencies = [] // ms, measured (edit, receiver) pairs
const latencyAt = [] // ms since the measured window's start, of the edit, per latency
let duplicates = 0
let echoes = 0
let unknown = 0
let measureStart = Infinity

function makeEditor (roomIndex, room, index) {
  const doc = new Y.Doc()
  const map = doc.getMap('bench')
  const editor = { roomIndex, index, doc, map, provider: null, synced: false, seq: 0, global: 0 }
  let provider
  if (config.target === 'hocuspocus') {
    provider = new HocuspocusProvider({
      url: config.url,
      name: room.name,
      document: doc,
      WebSocketPolyfill: WebSocket,
      onSynced: () => { editor.synced = true; editor.onSynced && editor.onSynced() }
    })
  } else if (config.target === 'yws') {
    provider = new WebsocketProvider(config.url, room.name, doc, {
      params: room.auth || {},
      WebSocketPolyfill: WebSocket,
      disableBc: true
    })
    provider.on('sync', (isSynced) => { if (isSynced) { editor.synced = true; editor.onSynced && editor.onSynced() } })
  } else {
    provider = new SocketIOProvider(config.url, room.name, doc, { disableBc: true }, { auth: room.auth || {} })
    provider.on('sync', (isSynced) => { if (isSynced) { editor.synced = true; editor.onSynced && editor.onSynced() } })
  }
  editor.provider = provider
  provider.awareness.setLocalState({ user: { name: `editor ${roomIndex}.${index}`, color: '#30bced' }, cursor: { bar: 0, step: index % 16, row: 0 } })
  map.observe((event) => {
    if (event.transaction.local) return
    const now = performance.now()
    for (const key of event.keysChanged) {
      const token = map.get(key)
      const record = typeof token === 'string' ? sent.get(token) : undefined
      if (record === undefined) { if (token !== undefined) unknown++; continue }
      if (record.editor === editor.global) { echoes++; continue }
      if (record.seen.has(editor.global)) { duplicates++; continue }
      record.seen.add(editor.global)
      if (record.measured) {
        latencies.push(now - record.t)
        latencyAt.push(record.t - measureStart)
      }
    }
  })
  return editor
}

const editors = []

async function connect (timeoutS) {
  const started = performance.now()
  config.rooms.forEach((room, r) => {
    for (let e = 0; e < config.editors; e++) editors.push(makeEditor(r, room, e))
  })
  editors.forEach((editor, i) => { editor.global = i })
  const times = await Promise.all(editors.map((editor) => new Promise((resolve) => {
    if (editor.synced) return resolve(performance.now() - started)
    const timer = setTimeout(() => resolve(null), timeoutS * 1000)
    editor.onSynced = () => { clearTimeout(timer); editor.onSynced = null; resolve(performance.now() - started) }
  })))
  const ok = times.filter((t) => t !== null)
  out({ event: 'connected', connect_ms: ok, failed: times.length - ok.length })
}

function sleep (ms) {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)))
}

async function load ({ rate, warmup, duration, grace }) {
  const period = 1000 / rate
  const start = performance.now() + 200
  measureStart = start + warmup * 1000
  const measureEnd = measureStart + duration * 1000
  const sendLag = []
  let measuredEdits = 0
  let sentEdits = 0
  await Promise.all(editors.map(async (editor) => {
    let next = start + Math.random() * period
    while (next < measureEnd) {
      await sleep(next - performance.now())
      const seq = editor.seq++
      const token = `${editor.roomIndex}:${editor.index}:${seq}`
      const measured = next >= measureStart
      const t = performance.now()
      sent.set(token, { t, measured, editor: editor.global, seen: new Set() })
      editor.map.set(`e${editor.index}s${seq % SLOTS}`, token)
      sentEdits++
      if (measured) { measuredEdits++; sendLag.push(t - next) }
      next += period
    }
  }))
  await sleep(grace * 1000)
  let delivered = 0
  for (const record of sent.values()) if (record.measured) delivered += record.seen.size
  const expected = measuredEdits * (config.editors - 1)
  out({
    event: 'loaded',
    sent_edits: sentEdits,
    measured_edits: measuredEdits,
    expected_pairs: expected,
    delivered_pairs: delivered,
    lost_pairs: expected - delivered,
    duplicates,
    echoes,
    unknown,
    latencies_ms: latencies.map((v) => Math.round(v * 1000) / 1000),
    latency_at_ms: latencyAt.map((v) => Math.round(v)),
    send_lag_ms: sendLag.map((v) => Math.round(v * 1000) / 1000)
  })
  sent.clear()
  latencies.length = 0
  latencyAt.length = 0
}

function waitSynced (editor, timeoutS) {
  return new Promise((resolve) => {
    if (editor.synced) return resolve(true)
    const timer = setTimeout(() => resolve(false), timeoutS * 1000)
    editor.onSynced = () => { clearTimeout(timer); editor.onSynced = null; resolve(true) }
  })
}

function replace (old) {
  const room = config.rooms[old.roomIndex]
  const editor = makeEditor(old.roomIndex, room, old.index)
  editor.global = old.global
  editor.seq = old.seq
  editors[old.global] = editor
  return editor
}

function shuffled (items) {
  const copy = items.slice()
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [copy[i], copy[j]] = [copy[j], copy[i]]
  }
  return copy
}

async function churn ({ sockets, rooms, gap, timeout }) {
  const closedRooms = new Set(shuffled(config.rooms.map((_, r) => r)).slice(0, rooms))
  const others = shuffled(editors.filter((e) => !closedRooms.has(e.roomIndex))).slice(0, sockets)
  const leaving = editors.filter((e) => closedRooms.has(e.roomIndex))
  for (const editor of [...others, ...leaving]) editor.provider.destroy()
  const rejoined = others.map(replace)
  let synced = await Promise.all(rejoined.map((e) => waitSynced(e, timeout)))
  await sleep(gap * 1000)
  const reopened = leaving.map(replace)
  synced = synced.concat(await Promise.all(reopened.map((e) => waitSynced(e, timeout))))
  out({ event: 'churned', reconnected: rejoined.length, reopened: closedRooms.size, failed: synced.filter((ok) => !ok).length })
}

function canonical (map) {
  const json = map.toJSON()
  return JSON.stringify(Object.keys(json).sort().map((k) => [k, json[k]]))
}

function check () {
  const problems = []
  let converged = 0
  config.rooms.forEach((room, r) => {
    const members = editors.filter((e) => e.roomIndex === r)
    const reference = members[0]
    const sv = Buffer.from(Y.encodeStateVector(reference.doc)).toString('base64')
    const content = canonical(reference.map)
    const differing = members.filter((e) =>
      Buffer.from(Y.encodeStateVector(e.doc)).toString('base64') !== sv || canonical(e.map) !== content)
    if (differing.length === 0) converged++
    else {
      const detail = differing.map((e) => `editor ${e.index}: sv ${JSON.stringify([...Y.decodeStateVector(Y.encodeStateVector(e.doc))])}, ${Object.keys(e.map.toJSON()).length} keys`)
      problems.push(`${room.name}: ${differing.length} of ${members.length} editors differ from editor 0 (sv ${JSON.stringify([...Y.decodeStateVector(Y.encodeStateVector(reference.doc))])}, ${Object.keys(reference.map.toJSON()).length} keys): ${detail.join('; ')}`)
    }
  })
  out({ event: 'checked', rooms: config.rooms.length, converged, problems: problems.slice(0, 20) })
}

for await (const line of lines) {
  if (!line.trim()) continue
  const command = JSON.parse(line)
  if (command.cmd === 'connect') await connect(command.timeout ?? 60)
  else if (command.cmd === 'load') await load(command)
  else if (command.cmd === 'check') check()
  else if (command.cmd === 'churn') await churn(command)
  else if (command.cmd === 'close') {
    for (const editor of editors) editor.provider.destroy()
    out({ event: 'closed' })
    process.exit(0)
  }
}
