// The kit as one browser ES module (dist/browser/kit.js): the kit with yjs, y-protocols and
// socket.io-client inside, no bare imports. The server's public pages load it to follow a
// shared document live (pages/assets.py serves it under an immutable hashed URL).
import { build } from 'esbuild'

await build({
  entryPoints: [new URL('../src/index.ts', import.meta.url).pathname],
  outfile: new URL('../dist/browser/kit.js', import.meta.url).pathname,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2020',
  minify: true,
  legalComments: 'none',
  logLevel: 'warning'
})
console.log('built dist/browser/kit.js')
