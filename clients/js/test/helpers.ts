/** What the kit's tests share: the server under test, its control channel, waiting. */

import { readFileSync } from 'node:fs'

import { createClient, MemoryStorage, type ClientOptions, type MusicPlaygroundClient } from '../src/index.js'

/** The `musicplayground serve` under test (started by tests/clients/ on the Python side). */
export const SERVER = process.env.SERVER ?? ''
/** Its control server: stop/start the process, mint tokens, grant admin (tests/clients/harness.py). */
export const CONTROL = process.env.CONTROL ?? ''

export function needServer (): void {
  if (SERVER === '' || CONTROL === '') throw new Error('SERVER and CONTROL must be set (run through pytest tests/clients)')
}

export async function control<T = Record<string, unknown>> (action: string, body: Record<string, unknown> = {}): Promise<T> {
  const res = await fetch(`${CONTROL}/${action}`, { method: 'POST', body: JSON.stringify(body), headers: { 'Content-Type': 'application/json' } })
  const answer = await res.json() as T & { error?: string }
  if (!res.ok) throw new Error(`control ${action}: ${answer.error ?? res.status}`)
  return answer
}

/** A kit client of its own (its own memory storage: another browser, another person). */
export function newClient (options: Partial<ClientOptions> = {}): MusicPlaygroundClient {
  return createClient({ baseUrl: SERVER, storage: new MemoryStorage(), ...options })
}

/** Polls `predicate` until it is truthy. */
export async function waitFor<T> (predicate: () => T | Promise<T>, timeoutMs = 10_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await predicate()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(25)
  }
}

export async function sleep (ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}

/** The composer's localStorage fixture (tests/fixtures/composer-localstorage.json), as storage. */
export function composerStorage (): MemoryStorage {
  const path = process.env.FIXTURE ?? new URL('../../../tests/fixtures/composer-localstorage.json', import.meta.url).pathname
  const fixture = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>
  const storage = new MemoryStorage()
  for (const [key, value] of Object.entries(fixture)) {
    if (key.startsWith('music-playground:')) storage.setItem(key, JSON.stringify(value))
  }
  return storage
}

/** A small valid WAV file (mono, 16-bit, 8 kHz, silence). */
export function wav (samples = 800): Blob {
  const buffer = new ArrayBuffer(44 + samples * 2)
  const view = new DataView(buffer)
  const text = (offset: number, s: string): void => { for (let i = 0; i < s.length; i++) view.setUint8(offset + i, s.charCodeAt(i)) }
  text(0, 'RIFF'); view.setUint32(4, 36 + samples * 2, true); text(8, 'WAVE')
  text(12, 'fmt '); view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true)
  view.setUint32(24, 8000, true); view.setUint32(28, 16000, true); view.setUint16(32, 2, true); view.setUint16(34, 16, true)
  text(36, 'data'); view.setUint32(40, samples * 2, true)
  return new Blob([buffer], { type: 'audio/wav' })
}
