// Bundle the demo page (examples/demo) with esbuild: the kit and its dependencies, no CDN.
import { build } from 'esbuild'

await build({
  entryPoints: [new URL('../examples/demo/demo.ts', import.meta.url).pathname],
  outfile: new URL('../examples/demo/dist/demo.js', import.meta.url).pathname,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2020',
  sourcemap: true,
  minify: true,
  logLevel: 'warning'
})
console.log('built examples/demo/dist/demo.js')
