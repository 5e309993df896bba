/**
 * The seed's storage layer: one interface over the composer's localStorage and over the API,
 * so components do not care where loops and songs live.
 */

import { ApiError } from './errors.js'
import type { ApiClient } from './http.js'
import type { KeyValueStorage } from './session.js'
import type { ChordCell, IconStep, LoopContent, SongContent, TimelineBlock, components } from './types.js'

/** A loop as the storage layer hands it out: its id, its content in the seed's shape. */
export interface StoredLoop extends LoopContent {
  id: string
  isPublic?: boolean
  updatedAt?: string
}

/** A song as the storage layer hands it out. */
export interface StoredSong extends SongContent {
  id: string
  isPublic?: boolean
  updatedAt?: string
  /** From the API: timeline blocks naming loops that do not exist or that you may not read. */
  warnings?: Array<components['schemas']['SongWarning']>
}

/** The seed's `StorageAdapter`. */
export interface StorageAdapter {
  getLoops: () => Promise<StoredLoop[]>
  getLoop: (id: string) => Promise<StoredLoop | null>
  saveLoop: (loop: StoredLoop) => Promise<StoredLoop>
  deleteLoop: (id: string) => Promise<void>
  getSongs: () => Promise<StoredSong[]>
  getSong: (id: string) => Promise<StoredSong | null>
  saveSong: (song: StoredSong) => Promise<StoredSong>
  deleteSong: (id: string) => Promise<void>
}

/** Where the composer keeps its work in localStorage (objects keyed by id). */
export const COMPOSER_KEYS = { loops: 'music-playground:loops', songs: 'music-playground:songs' } as const

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/** True for ids the server never gave: `local-…`, and the composer's own (`loop-…`, any non-UUID). */
export function isLocalId (id: string): boolean {
  return id.startsWith('local-') || !UUID_RE.test(id)
}

type Raw = Record<string, unknown>

/** The items of a localStorage collection, whether an object keyed by id (the composer) or an array (the seed). */
export function readCollection (storage: KeyValueStorage, key: string): { items: Raw[], asArray: boolean } {
  const text = storage.getItem(key)
  if (text === null) return { items: [], asArray: false }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return { items: [], asArray: false }
  }
  if (Array.isArray(parsed)) return { items: parsed.filter(isRecord), asArray: true }
  if (isRecord(parsed)) {
    return { items: Object.entries(parsed).filter(([, v]) => isRecord(v)).map(([id, v]) => ({ ...(v as Raw), id: (v as Raw).id ?? id })), asArray: false }
  }
  return { items: [], asArray: false }
}

/** Writes a collection back in the shape it had. */
export function writeCollection (storage: KeyValueStorage, key: string, items: Raw[], asArray: boolean): void {
  const value = asArray ? items : Object.fromEntries(items.map((item) => [String(item.id), item]))
  storage.setItem(key, JSON.stringify(value))
}

function text (value: unknown, fallback: string): string {
  return typeof value === 'string' ? value : fallback
}

function isRecord (value: unknown): value is Raw {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** The composer's loop record (`bars`, steps by `bar`) as the kit's loop. */
export function loopFromComposer (raw: Raw): StoredLoop {
  const steps = Array.isArray(raw.iconSequence) ? raw.iconSequence.filter(isRecord) : []
  return {
    id: String(raw.id),
    name: text(raw.name, ''),
    length: (raw.length ?? raw.bars ?? 4) as LoopContent['length'],
    bpm: (raw.bpm ?? null) as number | null,
    color: text(raw.color, '#FFD11A'),
    schemaVersion: (raw.schemaVersion ?? null) as number | null,
    chordProgression: (Array.isArray(raw.chordProgression) ? raw.chordProgression : []) as ChordCell[],
    iconSequence: steps.map(({ bar, step, ...rest }) => ({ ...rest, step: (step ?? bar) as number }) as IconStep),
    ...(typeof raw.isPublic === 'boolean' ? { isPublic: raw.isPublic } : {}),
    ...(typeof raw.updatedAt === 'string' ? { updatedAt: raw.updatedAt } : {})
  }
}

/** The kit's loop as the composer stores it (keeps the record's other fields). */
export function loopToComposer (loop: StoredLoop, previous: Raw = {}): Raw {
  const { length, iconSequence, ...rest } = loop
  return {
    ...previous,
    ...rest,
    bars: length,
    iconSequence: iconSequence.map(({ step, ...attrs }) => ({ bar: step, ...attrs })),
    updatedAt: new Date().toISOString()
  }
}

/** The composer's song record (blocks by `bars`) as the kit's song. */
export function songFromComposer (raw: Raw): StoredSong {
  const timeline = (Array.isArray(raw.timeline) ? raw.timeline.filter(isRecord) : [])
    .map(({ bars, duration, ...rest }) => ({ ...rest, duration: (duration ?? bars) as number }) as TimelineBlock)
  return {
    id: String(raw.id),
    name: text(raw.name, ''),
    bpm: Number(raw.bpm ?? 120),
    timeSignature: (raw.timeSignature ?? '4/4') as SongContent['timeSignature'],
    schemaVersion: (raw.schemaVersion ?? null) as number | null,
    timeline,
    totalBars: timeline.reduce((most, b) => Math.max(most, b.startBar + b.duration), 0),
    ...(typeof raw.isPublic === 'boolean' ? { isPublic: raw.isPublic } : {}),
    ...(typeof raw.updatedAt === 'string' ? { updatedAt: raw.updatedAt } : {})
  }
}

/** The kit's song as the composer stores it. */
export function songToComposer (song: StoredSong, previous: Raw = {}): Raw {
  const { timeline, warnings: _warnings, ...rest } = song
  return {
    ...previous,
    ...rest,
    timeline: timeline.map(({ duration, ...attrs }) => ({ ...attrs, bars: duration })),
    updatedAt: new Date().toISOString()
  }
}

export interface LocalStorageAdapterOptions {
  /** Default: `localStorage`. */
  storage?: KeyValueStorage
  /** Default: the composer's keys, `music-playground:loops` / `music-playground:songs`. */
  keys?: { loops: string, songs: string }
}

/** The composer's localStorage, read and written in its own format. */
export class LocalStorageAdapter implements StorageAdapter {
  private readonly storage: KeyValueStorage
  private readonly keys: { loops: string, songs: string }

  constructor (options: LocalStorageAdapterOptions = {}) {
    const storage = options.storage ?? (globalThis as { localStorage?: KeyValueStorage }).localStorage
    if (storage === undefined) throw new Error('LocalStorageAdapter needs localStorage (or options.storage)')
    this.storage = storage
    this.keys = options.keys ?? COMPOSER_KEYS
  }

  async getLoops (): Promise<StoredLoop[]> { return readCollection(this.storage, this.keys.loops).items.map(loopFromComposer) }
  async getLoop (id: string): Promise<StoredLoop | null> { return (await this.getLoops()).find((l) => l.id === id) ?? null }
  async saveLoop (loop: StoredLoop): Promise<StoredLoop> {
    const saved = { ...loop, id: loop.id === '' ? newLocalId() : loop.id }
    this.upsert(this.keys.loops, loopToComposer, saved)
    return saved
  }

  async deleteLoop (id: string): Promise<void> { this.remove(this.keys.loops, id) }

  async getSongs (): Promise<StoredSong[]> { return readCollection(this.storage, this.keys.songs).items.map(songFromComposer) }
  async getSong (id: string): Promise<StoredSong | null> { return (await this.getSongs()).find((s) => s.id === id) ?? null }
  async saveSong (song: StoredSong): Promise<StoredSong> {
    const saved = { ...song, id: song.id === '' ? newLocalId() : song.id }
    this.upsert(this.keys.songs, songToComposer, saved)
    return saved
  }

  async deleteSong (id: string): Promise<void> { this.remove(this.keys.songs, id) }

  private upsert<T extends { id: string }>(key: string, toRaw: (item: T, previous?: Raw) => Raw, item: T): void {
    const { items, asArray } = readCollection(this.storage, key)
    const index = items.findIndex((raw) => raw.id === item.id)
    if (index >= 0) items[index] = toRaw(item, items[index])
    else items.push(toRaw(item))
    writeCollection(this.storage, key, items, asArray)
  }

  private remove (key: string, id: string): void {
    const { items, asArray } = readCollection(this.storage, key)
    writeCollection(this.storage, key, items.filter((raw) => raw.id !== id), asArray)
  }
}

function newLocalId (): string {
  const random = globalThis.crypto?.randomUUID?.() ?? `${Date.now()}-${Math.random().toString(16).slice(2)}`
  return `local-${random}`
}

function loopContent (loop: StoredLoop): components['schemas']['LoopCreate'] {
  return {
    name: loop.name,
    length: loop.length,
    bpm: loop.bpm,
    color: loop.color,
    schemaVersion: loop.schemaVersion,
    chordProgression: loop.chordProgression,
    iconSequence: loop.iconSequence,
    ...(loop.isPublic !== undefined ? { isPublic: loop.isPublic } : {})
  }
}

function songContent (song: StoredSong): components['schemas']['SongCreate'] {
  return {
    name: song.name,
    bpm: song.bpm,
    timeSignature: song.timeSignature,
    schemaVersion: song.schemaVersion,
    timeline: song.timeline,
    ...(song.isPublic !== undefined ? { isPublic: song.isPublic } : {})
  }
}

function storedLoop (loop: components['schemas']['LoopPublic']): StoredLoop {
  return {
    id: loop.id,
    name: loop.name,
    length: loop.length as LoopContent['length'],
    bpm: loop.bpm,
    color: loop.color,
    schemaVersion: loop.schemaVersion,
    chordProgression: loop.chordProgression as unknown as ChordCell[],
    iconSequence: loop.iconSequence as unknown as IconStep[],
    isPublic: loop.isPublic,
    updatedAt: loop.updatedAt
  }
}

function storedSong (song: components['schemas']['SongPublic'] & { warnings?: StoredSong['warnings'] }): StoredSong {
  return {
    id: song.id,
    name: song.name,
    bpm: song.bpm,
    timeSignature: song.timeSignature as SongContent['timeSignature'],
    schemaVersion: song.schemaVersion,
    timeline: song.timeline as unknown as TimelineBlock[],
    totalBars: song.totalBars,
    isPublic: song.isPublic,
    updatedAt: song.updatedAt,
    ...(song.warnings !== undefined && song.warnings.length > 0 ? { warnings: song.warnings } : {})
  }
}

const PAGE = 100

/** The API as a StorageAdapter: local ids (`local-…`, or any id the server never gave) are
 * created, server ids updated; a missing item reads as null and deletes quietly. */
export class ApiStorageAdapter implements StorageAdapter {
  constructor (private readonly api: ApiClient) {}

  async getLoops (): Promise<StoredLoop[]> {
    const out: StoredLoop[] = []
    for (let page = 1; ; page++) {
      const { loops, hasMore } = await this.api.loops.list({ page, limit: PAGE, include: 'content' })
      out.push(...loops.map((loop) => storedLoop(loop as components['schemas']['LoopPublic'])))
      if (!hasMore) return out
    }
  }

  async getLoop (id: string): Promise<StoredLoop | null> {
    if (isLocalId(id)) return null
    return await orNull(async () => storedLoop(await this.api.loops.get(id)))
  }

  async saveLoop (loop: StoredLoop): Promise<StoredLoop> {
    if (isLocalId(loop.id)) return storedLoop(await this.api.loops.create(loopContent(loop)))
    return storedLoop(await this.api.loops.update(loop.id, loopContent(loop)))
  }

  async deleteLoop (id: string): Promise<void> {
    if (!isLocalId(id)) await orNull(async () => await this.api.loops.delete(id))
  }

  async getSongs (): Promise<StoredSong[]> {
    const out: StoredSong[] = []
    for (let page = 1; ; page++) {
      const { songs, hasMore } = await this.api.songs.list({ page, limit: PAGE, include: 'content' })
      out.push(...songs.map((song) => storedSong(song as components['schemas']['SongPublic'])))
      if (!hasMore) return out
    }
  }

  async getSong (id: string): Promise<StoredSong | null> {
    if (isLocalId(id)) return null
    return await orNull(async () => storedSong(await this.api.songs.get(id)))
  }

  async saveSong (song: StoredSong): Promise<StoredSong> {
    if (isLocalId(song.id)) return storedSong(await this.api.songs.create(songContent(song)))
    return storedSong(await this.api.songs.update(song.id, songContent(song)))
  }

  async deleteSong (id: string): Promise<void> {
    if (!isLocalId(id)) await orNull(async () => await this.api.songs.delete(id))
  }
}

async function orNull<T> (fn: () => Promise<T>): Promise<T | null> {
  try {
    return await fn()
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return null
    throw err
  }
}
