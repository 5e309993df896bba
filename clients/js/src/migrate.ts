/**
 * The seed's migration flow: the composer's localStorage loops and songs go to the server
 * (`POST /api/migrate`), the local copies take the new ids (song timelines too), localStorage is
 * kept as a cache, and `migrated`, `migratedAt` and `useBackend` are set.
 *
 * Safe to run again after a failure part-way: the server's mapping is written to a journal key
 * before anything else changes, and a rerun sends items already renamed under their original
 * local ids, which the server answers from its mapping (it is idempotent per local id).
 */

import type { ApiClient } from './http.js'
import type { KeyValueStorage } from './session.js'
import { COMPOSER_KEYS, readCollection, writeCollection } from './storage.js'
import type { MigrateResponse } from './types.js'

/** The flags the seed's flow sets, under the seed's names. */
export const MIGRATION_FLAGS = { migrated: 'migrated', migratedAt: 'migratedAt', useBackend: 'useBackend' } as const
/** Where the server's id mapping is kept while a migration is under way. */
export const MIGRATION_JOURNAL = 'music-playground:migration'

export interface MigrateOptions {
  api: ApiClient
  /** Default: `localStorage`. */
  storage?: KeyValueStorage
  /** Default: the composer's keys (`music-playground:loops` / `songs`); the seed's `loops` / `songs` arrays work too. */
  keys?: { loops: string, songs: string }
}

export type MigrationResult = MigrateResponse & {
  /** True when `migrated` was already set: nothing was sent. */
  alreadyMigrated: boolean
}

interface Journal {
  loops: Record<string, string>
  songs: Record<string, string>
}

type Raw = Record<string, unknown>

export async function migrateToBackend (options: MigrateOptions): Promise<MigrationResult> {
  const storage = options.storage ?? (globalThis as { localStorage?: KeyValueStorage }).localStorage
  if (storage === undefined) throw new Error('migrateToBackend needs localStorage (or options.storage)')
  const keys = options.keys ?? COMPOSER_KEYS
  if (storage.getItem(MIGRATION_FLAGS.migrated) === 'true') {
    return {
      alreadyMigrated: true,
      loops: { created: 0, failed: 0, alreadyMigrated: 0 },
      songs: { created: 0, failed: 0, alreadyMigrated: 0 },
      idMapping: { loops: {}, songs: {} },
      errors: [],
      warnings: []
    }
  }
  const loops = readCollection(storage, keys.loops)
  const songs = readCollection(storage, keys.songs)
  const journal = readJournal(storage)
  // Items an interrupted run already renamed go back under their local ids.
  const localLoopId = invert(journal.loops)
  const localSongId = invert(journal.songs)
  const sentLoops = loops.items.map((loop) => ({ ...loop, id: localLoopId[String(loop.id)] ?? loop.id }))
  const sentSongs = songs.items.map((song) => ({
    ...song,
    id: localSongId[String(song.id)] ?? song.id,
    timeline: mapTimeline(song.timeline, localLoopId)
  }))

  const result = await options.api.migrate({ loops: keyed(sentLoops), songs: keyed(sentSongs) })

  // The journal first: whatever fails after this, a rerun finds the mapping.
  const mapping: Journal = {
    loops: { ...journal.loops, ...stringMap(result.idMapping.loops) },
    songs: { ...journal.songs, ...stringMap(result.idMapping.songs) }
  }
  storage.setItem(MIGRATION_JOURNAL, JSON.stringify(mapping))

  // Keep localStorage as a cache, under the new ids (items that failed keep their local ids).
  writeCollection(storage, keys.loops, sentLoops.map((loop) => ({ ...loop, id: mapping.loops[String(loop.id)] ?? loop.id })), loops.asArray)
  writeCollection(storage, keys.songs, sentSongs.map((song) => ({
    ...song,
    id: mapping.songs[String(song.id)] ?? song.id,
    timeline: mapTimeline(song.timeline, mapping.loops)
  })), songs.asArray)
  storage.setItem(MIGRATION_FLAGS.migrated, 'true')
  storage.setItem(MIGRATION_FLAGS.migratedAt, new Date().toISOString())
  // Switch to backend storage.
  storage.setItem(MIGRATION_FLAGS.useBackend, 'true')
  storage.removeItem(MIGRATION_JOURNAL)
  return { ...result, alreadyMigrated: false }
}

function readJournal (storage: KeyValueStorage): Journal {
  try {
    const parsed = JSON.parse(storage.getItem(MIGRATION_JOURNAL) ?? 'null') as Journal | null
    if (parsed !== null && typeof parsed.loops === 'object' && typeof parsed.songs === 'object') return parsed
  } catch {
    // an unreadable journal is as good as none: the server's mapping answers anyway
  }
  return { loops: {}, songs: {} }
}

function invert (mapping: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(mapping).map(([local, server]) => [server, local]))
}

function stringMap (mapping: Record<string, unknown>): Record<string, string> {
  return Object.fromEntries(Object.entries(mapping).map(([k, v]) => [k, String(v)]))
}

function mapTimeline (timeline: unknown, ids: Record<string, string>): unknown {
  if (!Array.isArray(timeline)) return timeline
  return timeline.map((block: unknown) => {
    if (typeof block !== 'object' || block === null) return block
    const loopId = String((block as Raw).loopId)
    return { ...(block as Raw), loopId: ids[loopId] ?? loopId }
  })
}

function keyed (items: Raw[]): Record<string, Raw> {
  return Object.fromEntries(items.map((item) => [String(item.id), item]))
}
