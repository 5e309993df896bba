#!/usr/bin/env node
// A peer server for the stock-client benchmark (bench/stock.py), from npm, with its defaults:
//   node bench/js/peer-server.mjs ysocketio <port>   the y-socket.io server (socket.io + YSocketIO)
//   node bench/js/peer-server.mjs hocuspocus <port>  @hocuspocus/server
//   node bench/js/peer-server.mjs ywebsocket <port>  @y/websocket-server (its utils' setupWSConnection)
// Reads one JSON line on stdin first: {"<room name>": "<base64 Yjs update>", ...}, the
// document each room starts from (the loops our server holds in the same run), loaded as a
// persistence extension would load it when the room is first opened. Prints
// {"event":"listening","port":n} on stdout once it accepts connections. Neither peer
// persists anything here (their defaults): ours writes every update durably before relaying it.

import http from 'node:http'
import readline from 'node:readline'
import * as Y from 'yjs'

const [kind, portArg] = process.argv.slice(2)
const port = Number(portArg)
const documents = new Map()
for await (const line of readline.createInterface({ input: process.stdin })) {
  for (const [name, update] of Object.entries(JSON.parse(line))) documents.set(name, Buffer.from(update, 'base64'))
  break
}

function listening () {
  process.stdout.write(JSON.stringify({ event: 'listening', port }) + '\n')
}

if (kind === 'ysocketio') {
  const { Server } = await import('socket.io')
  const { YSocketIO } = await import('y-socket.io/dist/server')
  const httpServer = http.createServer((req, res) => { res.writeHead(200); res.end('ok') })
  const io = new Server(httpServer)
  const ysocketio = new YSocketIO(io, {})
  ysocketio.on('document-loaded', (doc) => {
    const stored = documents.get(doc.name)
    if (stored) Y.applyUpdate(doc, stored)
  })
  ysocketio.initialize()
  httpServer.listen(port, '127.0.0.1', listening)
} else if (kind === 'hocuspocus') {
  const { Server } = await import('@hocuspocus/server')
  const server = new Server({
    port,
    address: '127.0.0.1',
    quiet: true,
    async onLoadDocument ({ documentName }) { return documents.get(documentName) ?? null }
  })
  await server.listen()
  listening()
} else if (kind === 'ywebsocket') {
  const { WebSocketServer } = await import('ws')
  const { setupWSConnection, setContentInitializor } = await import('@y/websocket-server/utils')
  setContentInitializor(async (doc) => {
    const stored = documents.get(doc.name)
    if (stored) Y.applyUpdate(doc, stored)
  })
  const wss = new WebSocketServer({ noServer: true })
  wss.on('connection', setupWSConnection)
  const httpServer = http.createServer((req, res) => { res.writeHead(200); res.end('ok') })
  httpServer.on('upgrade', (request, socket, head) => {
    wss.handleUpgrade(request, socket, head, (ws) => wss.emit('connection', ws, request))
  })
  httpServer.listen(port, '127.0.0.1', listening)
} else {
  process.stderr.write(`unknown peer ${kind}\n`)
  process.exit(2)
}
