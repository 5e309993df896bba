import { describe, expect, it } from 'vitest'

import { LocalStorageAdapter, MemoryStorage, isLocalId } from '../../src/index.js'
import { composerStorage } from '../helpers.js'

describe('LocalStorageAdapter over the composer\'s localStorage', () => {
  it('reads the fixture in the seed\'s shape (bars -> length, bar -> step, bars -> duration)', async () => {
    const adapter = new LocalStorageAdapter({ storage: composerStorage() })
    const loops = await adapter.getLoops()
    expect(loops.map((l) => l.id)).toEqual(['loop-1700000000001-30a51d', 'loop-1700000000002-e87857', 'loop-1700000000003-a3df44'])
    const first = loops[0]!
    expect(first.length).toBe(4)
    expect(first.iconSequence[0]).toEqual({ step: 0, row: 0, soundId: 'drum-kick', velocity: 1, pitch: 36, duration16: 1 })
    const [song] = await adapter.getSongs()
    expect(song!.timeline.map((b) => b.duration)).toEqual([4, 8, 4])
    expect(song!.totalBars).toBe(16)
    expect(await adapter.getLoop('nope')).toBeNull()
  })

  it('writes back in the composer\'s own format, keeping the other fields', async () => {
    const storage = composerStorage()
    const adapter = new LocalStorageAdapter({ storage })
    const loop = (await adapter.getLoop('loop-1700000000001-30a51d'))!
    await adapter.saveLoop({ ...loop, name: 'Renamed', iconSequence: [{ step: 2, soundId: 'drum-kick', velocity: 0.5 }] })
    const raw = JSON.parse(storage.getItem('music-playground:loops')!)['loop-1700000000001-30a51d']
    expect(raw.name).toBe('Renamed')
    expect(raw.bars).toBe(4)
    expect(raw.iconSequence).toEqual([{ bar: 2, soundId: 'drum-kick', velocity: 0.5 }])
    expect(raw.schemaVersion).toBe(1)
    const created = await adapter.saveSong({ id: '', name: 'New', bpm: 100, timeSignature: '3/4', schemaVersion: null, timeline: [], totalBars: 0 })
    expect(created.id.startsWith('local-')).toBe(true)
    expect((await adapter.getSongs()).length).toBe(2)
    await adapter.deleteSong(created.id)
    await adapter.deleteLoop('loop-1700000000002-e87857')
    expect((await adapter.getSongs()).length).toBe(1)
    expect((await adapter.getLoops()).length).toBe(2)
  })

  it('also reads the seed\'s arrays under its own keys', async () => {
    const storage = new MemoryStorage()
    storage.setItem('loops', JSON.stringify([{ id: 'local-1', name: 'A', length: 2, color: '#FFD11A', chordProgression: [], iconSequence: [] }]))
    const adapter = new LocalStorageAdapter({ storage, keys: { loops: 'loops', songs: 'songs' } })
    expect((await adapter.getLoops())[0]!.length).toBe(2)
    await adapter.saveLoop({ ...(await adapter.getLoops())[0]!, name: 'B' })
    expect(Array.isArray(JSON.parse(storage.getItem('loops')!))).toBe(true)
  })

  it('tells local ids from server ids', () => {
    expect(isLocalId('local-123')).toBe(true)
    expect(isLocalId('loop-1700000000001-30a51d')).toBe(true)
    expect(isLocalId('8ac5d507-fb3a-4cf3-8999-1b0502dea69a')).toBe(false)
  })
})
