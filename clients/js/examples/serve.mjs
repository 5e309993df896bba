// Serve the demo page (examples/demo) on http://localhost:5173 — the origin the server allows
// by default (CORS_ORIGIN). `npm run demo`; `--port N` (or PORT) for another port.
import { createReadStream, existsSync, statSync } from 'node:fs'
import { createServer } from 'node:http'
import { extname, join, normalize } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('./demo/', import.meta.url))
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.map': 'application/json', '.css': 'text/css' }
const flag = process.argv.indexOf('--port')
const port = Number(flag >= 0 ? process.argv[flag + 1] : process.env.PORT ?? 5173)
const host = process.env.HOST ?? 'localhost'

if (!existsSync(join(ROOT, 'dist', 'demo.js'))) {
  console.error('examples/demo/dist/demo.js is missing: run `npm run build` first')
  process.exit(1)
}

createServer((req, res) => {
  const path = normalize(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)).replace(/^(\.\.[/\\])+/, '')
  let file = join(ROOT, path)
  if (!file.startsWith(ROOT) || !existsSync(file)) {
    res.writeHead(404).end('not found')
    return
  }
  if (statSync(file).isDirectory()) file = join(file, 'index.html')
  res.writeHead(200, { 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream', 'Cache-Control': 'no-store' })
  createReadStream(file).pipe(res)
}).listen(port, host, () => {
  console.log(`demo on http://${host}:${port}/ (API: ?server=…, default http://localhost:3001)`)
})
