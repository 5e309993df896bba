// Generate src/generated/openapi.ts from a server's /api/openapi.json with openapi-typescript.
//
//   node scripts/gen-types.mjs [--url http://localhost:3001] [--file spec.json] [--check]
//
// --check writes nothing and exits 1 if the committed file differs from what the spec gives
// (the drift test runs it against a freshly started server).
import { readFile, writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import openapiTS, { astToString } from 'openapi-typescript'

const OUT = fileURLToPath(new URL('../src/generated/openapi.ts', import.meta.url))
const OPS_OUT = fileURLToPath(new URL('../src/generated/operations.ts', import.meta.url))
const HEADER = `/**
 * Types of the Music Playground REST API, generated from /api/openapi.json by openapi-typescript.
 * Do not edit: run \`npm run gen:types -- --url <server>\` (a test fails when this file drifts).
 */

`

function option (name) {
  const i = process.argv.indexOf(name)
  return i >= 0 ? process.argv[i + 1] : undefined
}

const file = option('--file')
const url = option('--url') ?? process.env.SERVER ?? 'http://localhost:3001'
const spec = file
  ? JSON.parse(await readFile(file, 'utf8'))
  : await (await fetch(new URL('/api/openapi.json', url))).json()
delete spec.servers // the server's own address is no part of the types
const ast = await openapiTS(spec, { alphabetize: true, defaultNonNullable: false })
const outputs = [
  [OUT, HEADER + astToString(ast)],
  [OPS_OUT, operationsTable(spec)]
]

/** Every operation's method, path and authentication, so the client can call any of them. */
function operationsTable (spec) {
  const rows = []
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const security = op.security ?? []
      const auth = security.length === 0 ? 'none' : security.some((s) => Object.keys(s).length === 0) ? 'optional' : 'required'
      rows.push(`  ${op.operationId}: { method: '${method.toUpperCase()}', path: '${path}', auth: '${auth}' },`)
    }
  }
  rows.sort()
  return `${HEADER.replace('Types of', 'The operations of')}import type { operations } from './openapi.js'

/** How each operation of /api/openapi.json is called. */
export interface OperationInfo {
  readonly method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE'
  readonly path: string
  /** \`required\`: a bearer token is needed; \`optional\`: sent when there is a session; \`none\`: never sent. */
  readonly auth: 'required' | 'optional' | 'none'
}

export const OPERATIONS = {
${rows.join('\n')}
} as const satisfies { readonly [K in keyof operations]: OperationInfo }
`
}

let drift = false
for (const [file, text] of outputs) {
  if (process.argv.includes('--check')) {
    const committed = await readFile(file, 'utf8').catch(() => '')
    if (committed !== text) {
      console.error(`${file} is out of date with the server's /api/openapi.json: run npm run gen:types`)
      drift = true
    }
  } else {
    await writeFile(file, text)
    console.log(`wrote ${file}`)
  }
}
if (drift) process.exit(1)
if (process.argv.includes('--check')) console.log('generated types match the spec')
