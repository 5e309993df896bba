#!/usr/bin/env node
// A peer server for the stock-client benchmark (bench/stock.py), from npm, with its defaults:
//   node bench/js/peer-server.mjs ysocketio <port>   the y-socket.io server (socket.io + YSocketIO)
//   node bench/js/peer-server.mjs hocuspocus <port>  @hocuspocus/server
// Prints {"event":"listening","port":n} on stdout once it accepts connections. Neither peer
// persists anything here (their defaults): ours writes every update durably before relaying it.

import http from 'node:http'

const [kind, portArg] = process.argv.slice(2)
const port = Number(portArg)

function listening () {
  process.stdout.write(JSON.stringify({ event: 'listening', port }) + '\n')
}

if (kind === 'ysocketio') {
  const { Server } = await import('socket.io')
  const { YSocketIO } = await import('y-socket.io/dist/server')
  const httpServer = http.createServer((req, res) => { res.writeHead(200); res.end('ok') })
  const io = new Server(httpServer)
  new YSocketIO(io, {}).initialize()
  httpServer.listen(port, '127.0.0.1', listening)
} else if (kind === 'hocuspocus') {
  const { Server } = await import('@hocuspocus/server')
  const server = new Server({ port, address: '127.0.0.1', quiet: true })
  await server.listen()
  listening()
} else {
  process.stderr.write(`unknown peer ${kind}\n`)
  process.exit(2)
}
