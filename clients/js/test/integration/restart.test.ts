/**
 * Live documents across a server restart: SIGTERM (the hand-over: server-shutdown, then the
 * transport drops) and SIGKILL; edits made while the server is down land afterwards, and the
 * reconnect gets a fresh token when the old one expired meanwhile.
 */

import { beforeAll, describe, expect, it } from 'vitest'

import { type LiveLoop, type MusicPlaygroundClient } from '../../src/index.js'
import { SERVER, control, needServer, newClient, waitFor } from '../helpers.js'

const unique = (): string => Math.random().toString(36).slice(2, 10)

async function pair (): Promise<{ owner: MusicPlaygroundClient, loopId: string, a: LiveLoop, b: LiveLoop }> {
  const owner = newClient()
  const editor = newClient()
  const username = `ed_${unique()}`
  await editor.api.users.updateMe({ username })
  const loop = await owner.api.loops.create({ name: 'Across restarts', length: 4 })
  await owner.api.loops.addCollaborator(loop.id, { username, role: 'editor' })
  const a = owner.openLoop(loop.id)
  const b = editor.openLoop(loop.id)
  await Promise.all([a.whenSynced(), b.whenSynced()])
  return { owner, loopId: loop.id, a, b }
}

beforeAll(() => needServer())

// Starting the server takes seconds, and on a loaded machine far more.
const RESTART_TEST_MS = 400_000

describe.each(['TERM', 'KILL'])('a server stopped with SIG%s and started again', (signal) => {
  it('both clients reconnect and every offline edit lands', async () => {
    const { owner, loopId, a, b } = await pair()
    const shutdowns: string[] = []
    a.on('server-shutdown', ({ message }) => shutdowns.push(message))
    a.toggleStep({ step: 0, soundId: 'drum-kick' })
    await a.whenSynced()

    await control('stop', { signal })
    await waitFor(() => a.status === 'offline' && b.status === 'offline', 60_000, 'offline')
    if (signal === 'TERM') expect(shutdowns).toHaveLength(1)
    // Offline: both keep editing.
    for (const step of [2, 4, 6]) a.toggleStep({ step, soundId: 'drum-kick' })
    a.setChord(0, { chord: 'Am' })
    b.setBpm(96)
    b.toggleStep({ step: 3, row: 1, soundId: 'drum-snare' })
    expect(a.hasUnsyncedChanges).toBe(true)
    expect(b.hasUnsyncedChanges).toBe(true)

    await control('start')
    await Promise.all([a.whenSynced(), b.whenSynced()])
    expect(a.hasUnsyncedChanges).toBe(false)
    await waitFor(() => JSON.stringify(a.content) === JSON.stringify(b.content), 10_000, 'convergence')
    const stored = await owner.api.loops.get(loopId)
    expect(stored.bpm).toBe(96)
    expect(stored.chordProgression).toEqual([{ bar: 0, chord: 'Am' }])
    expect(stored.iconSequence.map((s) => s.step)).toEqual([0, 2, 3, 4, 6])
    a.close()
    b.close()
  }, RESTART_TEST_MS)
})

describe('a token that expired while the server was down', () => {
  it('is refreshed for the reconnect', async () => {
    const { owner, loopId, a } = await pair()
    await control('stop', { signal: 'TERM' })
    await waitFor(() => a.status === 'offline', 10_000, 'offline')
    // The stored access token expired meanwhile (the kit still believes it is good).
    const key = `musicplayground:session:${SERVER}`
    const storage = (owner.session as unknown as { storage: { getItem: (k: string) => string | null, setItem: (k: string, v: string) => void } }).storage
    const current = JSON.parse(storage.getItem(key)!) as { user: { id: string } }
    const { token } = await control<{ token: string }>('mint-token', { userId: current.user.id, expiresIn: -5 })
    storage.setItem(key, JSON.stringify({ ...current, token, expiresAt: Date.now() + 3_600_000, refreshAt: Date.now() + 3_000_000 }))
    a.setName('Renamed offline')
    await control('start')
    await a.whenSynced()
    expect((await owner.api.loops.get(loopId)).name).toBe('Renamed offline')
    expect(JSON.parse(storage.getItem(key)!).token).not.toBe(token)
    a.close()
  }, RESTART_TEST_MS)
})
