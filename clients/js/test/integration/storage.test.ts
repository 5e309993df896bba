/**
 * The seed's storage layer against a real server: the API adapter, and the migration of the
 * composer's localStorage fixture, also when it fails part-way and is run again.
 */

import { beforeAll, describe, expect, it } from 'vitest'

import {
  ApiError, ApiStorageAdapter, LocalStorageAdapter, MIGRATION_JOURNAL, MemoryStorage, migrateToBackend,
  type KeyValueStorage, type MusicPlaygroundClient, type StoredLoop
} from '../../src/index.js'
import { composerStorage, needServer, newClient } from '../helpers.js'

const LOOPS = 'music-playground:loops'
const SONGS = 'music-playground:songs'

beforeAll(() => needServer())

/** What the composer has once migrated: loops and songs under server ids, timelines remapped. */
async function expectMigrated (client: MusicPlaygroundClient, storage: KeyValueStorage, original: KeyValueStorage): Promise<void> {
  const before = await new LocalStorageAdapter({ storage: original }).getLoops()
  const local = new LocalStorageAdapter({ storage })
  const loops = await local.getLoops()
  const songs = await local.getSongs()
  const server = new ApiStorageAdapter(client.api)
  const onServer = await server.getLoops()
  expect(onServer).toHaveLength(before.length) // nothing created twice
  expect(new Set(loops.map((l) => l.id))).toEqual(new Set(onServer.map((l) => l.id)))
  for (const loop of loops) {
    const remote = onServer.find((l) => l.id === loop.id)!
    const was = before.find((l) => l.name === loop.name)!
    expect(remote.iconSequence.length).toBe(was.iconSequence.length)
    expect(remote.length).toBe(was.length)
  }
  const [song] = songs
  expect(song!.id).toMatch(/^[0-9a-f-]{36}$/)
  for (const block of song!.timeline) expect(loops.map((l) => l.id)).toContain(block.loopId)
  const remoteSong = (await server.getSong(song!.id))!
  expect(remoteSong.timeline.map((b) => b.loopId)).toEqual(song!.timeline.map((b) => b.loopId))
  expect(storage.getItem('migrated')).toBe('true')
  expect(storage.getItem('useBackend')).toBe('true')
  expect(Number.isNaN(Date.parse(storage.getItem('migratedAt')!))).toBe(false)
  expect(storage.getItem(MIGRATION_JOURNAL)).toBeNull()
  // The raw records keep the composer's own spelling.
  const raw = JSON.parse(storage.getItem(LOOPS)!) as Record<string, { bars: number, id: string }>
  for (const [id, record] of Object.entries(raw)) expect(record.id).toBe(id)
  expect(Object.values(raw)[0]!.bars).toBeDefined()
}

describe('ApiStorageAdapter', () => {
  it('creates local ids, updates server ids, reads and deletes', async () => {
    const client = newClient()
    const adapter = new ApiStorageAdapter(client.api)
    const draft: StoredLoop = {
      id: 'local-1', name: 'Draft', length: 2, bpm: 90, color: '#FF0000', schemaVersion: 1, chordProgression: [{ bar: 0, chord: 'C' }], iconSequence: [{ step: 1, soundId: 'drum-kick', velocity: 0.5 }]
    }
    const created = await adapter.saveLoop(draft)
    expect(created.id).not.toBe('local-1')
    const updated = await adapter.saveLoop({ ...created, name: 'Saved' })
    expect(updated.id).toBe(created.id)
    expect((await adapter.getLoop(created.id))?.name).toBe('Saved')
    expect(await adapter.getLoop('local-1')).toBeNull()
    expect((await adapter.getLoops()).map((l) => l.id)).toEqual([created.id])
    const song = await adapter.saveSong({
      id: 'local-song', name: 'S', bpm: 100, timeSignature: '4/4', schemaVersion: null, totalBars: 0, timeline: [{ id: 'b', loopId: created.id, startBar: 0, duration: 2 }]
    })
    expect(song.totalBars).toBe(2)
    expect(song.warnings).toBeUndefined()
    const dangling = await adapter.saveSong({ ...song, timeline: [{ id: 'b', loopId: 'local-1', startBar: 0, duration: 2 }] })
    expect(dangling.warnings?.[0]?.code).toBe('unknown_loop')
    expect((await adapter.getSongs()).length).toBe(1)
    await adapter.deleteSong(song.id)
    await adapter.deleteLoop(created.id)
    await adapter.deleteLoop(created.id) // already gone: quiet
    expect(await adapter.getSong(song.id)).toBeNull()
  })

  it('the client picks the adapter by the useBackend flag', async () => {
    const storage = composerStorage()
    const client = newClient()
    expect(client.storage({ storage })).toBeInstanceOf(LocalStorageAdapter)
    storage.setItem('useBackend', 'true')
    expect(client.storage({ storage })).toBeInstanceOf(ApiStorageAdapter)
  })
})

describe('migrateToBackend', () => {
  it('migrates the composer\'s fixture exactly as the seed says', async () => {
    const client = newClient()
    const storage = composerStorage()
    const result = await client.migrateToBackend({ storage })
    expect(result.loops.created).toBe(3)
    expect(result.songs.created).toBe(1)
    expect(result.errors).toEqual([])
    expect(result.alreadyMigrated).toBe(false)
    await expectMigrated(client, storage, composerStorage())
    // Once migrated, running it again sends nothing.
    expect((await client.migrateToBackend({ storage })).alreadyMigrated).toBe(true)
    expect((await client.api.loops.list()).total).toBe(3)
  })

  it('a retry after the answer was lost creates nothing twice', async () => {
    let lose = true
    const client = newClient({
      fetch: async (input, init) => {
        const res = await fetch(input, init)
        if (lose && new URL(input).pathname === '/api/migrate') {
          lose = false
          throw new TypeError('network connection lost') // the server did it; we never heard
        }
        return res
      }
    })
    const storage = composerStorage()
    const failed = await client.migrateToBackend({ storage }).catch((e: unknown) => e)
    expect(failed).toMatchObject({ code: 'network_error' })
    expect(storage.getItem('migrated')).toBeNull()
    const result = await client.migrateToBackend({ storage })
    expect(result.loops.alreadyMigrated).toBe(3)
    expect(result.loops.created).toBe(0)
    await expectMigrated(client, storage, composerStorage())
  })

  it('a retry after localStorage failed part-way creates nothing twice', async () => {
    const client = newClient()
    const inner = composerStorage()
    let failOnce = true
    // The songs cannot be written (quota), after the loops were renamed.
    const storage: KeyValueStorage = {
      getItem: (key) => inner.getItem(key),
      removeItem: (key) => inner.removeItem(key),
      setItem: (key, value) => {
        if (key === SONGS && failOnce) {
          failOnce = false
          throw new Error('QuotaExceededError')
        }
        inner.setItem(key, value)
      }
    }
    await expect(client.migrateToBackend({ storage })).rejects.toThrow('QuotaExceededError')
    // Part-way: the loops carry server ids, the songs still the local ones, the journal is there.
    expect(Object.keys(JSON.parse(inner.getItem(LOOPS)!) as object)[0]).toMatch(/^[0-9a-f-]{36}$/)
    expect(inner.getItem(MIGRATION_JOURNAL)).not.toBeNull()
    const result = await migrateToBackend({ api: client.api, storage })
    expect(result.loops.alreadyMigrated).toBe(3)
    expect(result.songs.alreadyMigrated).toBe(1)
    expect(result.loops.created + result.songs.created).toBe(0)
    await expectMigrated(client, inner, composerStorage())
  })

  it('reports items the server refuses and keeps them local', async () => {
    const client = newClient()
    const storage = new MemoryStorage()
    storage.setItem(LOOPS, JSON.stringify({
      good: { id: 'good', name: 'Good', bars: 2 },
      bad: { id: 'bad', name: 'Bad', bars: 3 }
    }))
    const result = await client.migrateToBackend({ storage })
    expect(result.loops.created).toBe(1)
    expect(result.errors).toMatchObject([{ localId: 'bad', kind: 'loop' }])
    const ids = Object.keys(JSON.parse(storage.getItem(LOOPS)!) as object)
    expect(ids).toContain('bad')
    expect(ids.filter((id) => id !== 'bad')[0]).toBe(result.idMapping.loops.good)
  })

  it('surfaces a refused migration as an ApiError and changes nothing', async () => {
    const client = newClient()
    const storage = composerStorage()
    const before = storage.getItem(LOOPS)
    const err = await migrateToBackend({ api: client.api, storage: { ...wrap(storage), getItem: (k) => k === LOOPS ? '{"x": {"id": "x", "name": "' + 'n'.repeat(2_000_000) + '", "bars": 4}}' : storage.getItem(k) } }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ApiError)
    expect((err as ApiError).status).toBe(413)
    expect(storage.getItem(LOOPS)).toBe(before)
    expect(storage.getItem('migrated')).toBeNull()
  })
})

function wrap (storage: KeyValueStorage): KeyValueStorage {
  return { getItem: (k) => storage.getItem(k), setItem: (k, v) => storage.setItem(k, v), removeItem: (k) => storage.removeItem(k) }
}
