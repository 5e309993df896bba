/**
 * The layout of loops and songs inside their Yjs documents, as the server defines it
 * (music/schema.py, docs/realtime.md "Document schema"), and the bounds of their content
 * (music/bounds.py; a test compares these numbers with the server's).
 *
 * Loop: `meta` (name, length, color, bpm?, schemaVersion?), `chords` (bar as a decimal string ->
 * one plain JSON object {chord, roman?, root?, quality?}), `steps` (stepKey -> Y.Map of the step).
 * Song: `meta` (name, bpm, timeSignature, schemaVersion?), `timeline` (block id -> Y.Map
 * {loopId, startBar, duration, color?}). Every collection is a map keyed by its element's
 * identity, so two people toggling the same cell write one key, never two steps.
 *
 * Reading never throws on what a document holds: invalid entries are skipped, invalid optional
 * attributes dropped, scalars fall back to defaults (as the server reads). Writing validates
 * first and throws `ContentError` before touching the document.
 */

import * as Y from 'yjs'

import { ContentError } from './errors.js'
import type { ChordCell, IconStep, LoopContent, SongContent, TimelineBlock } from './types.js'

/** The content bounds (music/bounds.py). */
export const BOUNDS = {
  MAX_NAME_LEN: 100,
  MAX_CHORD_CELLS: 64,
  MAX_STEPS: 2048,
  MAX_TIMELINE_BLOCKS: 512,
  LOOP_LENGTHS: [1, 2, 4, 8],
  TIME_SIGNATURES: ['4/4', '3/4'],
  MIN_BPM: 40,
  MAX_BPM: 300,
  MIN_SCHEMA_VERSION: 1,
  MAX_SCHEMA_VERSION: 1000,
  MAX_CHORD_BAR: 1023,
  MAX_SHORT_TEXT: 20,
  MAX_SOUND_ID_LEN: 64,
  MAX_ID_LEN: 64,
  MAX_STEP: 63,
  MAX_ROW: 3,
  MAX_PITCH: 127,
  MIN_DURATION16: 1,
  MAX_DURATION16: 64,
  MAX_START_BAR: 100_000,
  MIN_BLOCK_DURATION: 1,
  MAX_BLOCK_DURATION: 1024,
  DEFAULT_VELOCITY: 0.8,
  DEFAULT_LOOP_COLOR: '#FFD11A',
  DEFAULT_SONG_BPM: 120,
  DEFAULT_TIME_SIGNATURE: '4/4'
} as const

export const META = 'meta'
export const CHORDS = 'chords'
export const STEPS = 'steps'
export const TIMELINE = 'timeline'

const DEFAULT_NAME = 'Untitled'
const DEFAULT_LOOP_LENGTH = 4
const COLOR_RE = /^#[0-9A-Fa-f]{6}$/
const NOTE_RE = /^[A-Ga-g][#b]?-?[0-9]$/
const BAR_KEY_RE = /^(0|[1-9][0-9]{0,3})$/
// eslint-disable-next-line no-control-regex
const UNSTORABLE = /[\u0000\ud800-\udfff]/

/** The identity of a sequencer cell: the `steps` map key. Exactly `JSON.stringify([step, row, soundId, pitch ?? note])`. */
export function stepKey (cell: { step: number, row?: number | null, soundId: string, pitch?: number | null, note?: string | null }): string {
  return JSON.stringify([cell.step, cell.row ?? null, cell.soundId, cell.pitch ?? cell.note ?? null])
}

// --- validation ------------------------------------------------------------------------------

class Invalid extends Error {}

function int (value: unknown, lo: number, hi: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) throw new Invalid(`expected an integer, got ${describe(value)}`)
  if (value < lo || value > hi) throw new Invalid(`expected an integer in [${lo}, ${hi}], got ${value}`)
  return value
}

function num (value: unknown, lo: number, hi: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < lo || value > hi) {
    throw new Invalid(`expected a number in [${lo}, ${hi}], got ${describe(value)}`)
  }
  return value
}

function str (value: unknown, max: number, min = 1): string {
  if (typeof value !== 'string') throw new Invalid(`expected a string, got ${describe(value)}`)
  if (value.length < min || value.length > max) throw new Invalid(`expected a string of ${min} to ${max} characters`)
  if (UNSTORABLE.test(value)) throw new Invalid('text contains a character that cannot be stored (NUL or a lone surrogate)')
  return value
}

function note (value: unknown): string {
  if (typeof value !== 'string' || !NOTE_RE.test(value)) throw new Invalid(`expected a note name like 'C4' or 'F#3', got ${describe(value)}`)
  return value
}

function color (value: unknown): string {
  if (typeof value !== 'string' || !COLOR_RE.test(value)) throw new Invalid(`expected a colour #RRGGBB, got ${describe(value)}`)
  return value
}

function choice<T> (value: unknown, choices: readonly T[]): T {
  if (!choices.includes(value as T)) throw new Invalid(`expected one of ${JSON.stringify(choices)}, got ${describe(value)}`)
  return value as T
}

function describe (value: unknown): string {
  if (value === null || ['string', 'number', 'boolean', 'undefined'].includes(typeof value)) {
    const text = JSON.stringify(value) ?? String(value)
    return text.length <= 40 ? text : `${text.slice(0, 37)}...`
  }
  return Array.isArray(value) ? 'array' : typeof value
}

type Validator = (value: unknown) => unknown

const CHORD_FIELDS: Record<string, Validator> = {
  bar: (v) => int(v, 0, BOUNDS.MAX_CHORD_BAR),
  chord: (v) => str(v, BOUNDS.MAX_SHORT_TEXT),
  roman: (v) => str(v, BOUNDS.MAX_SHORT_TEXT),
  root: (v) => str(v, BOUNDS.MAX_SHORT_TEXT),
  quality: (v) => str(v, BOUNDS.MAX_SHORT_TEXT)
}
const STEP_FIELDS: Record<string, Validator> = {
  step: (v) => int(v, 0, BOUNDS.MAX_STEP),
  soundId: (v) => str(v, BOUNDS.MAX_SOUND_ID_LEN),
  velocity: (v) => num(v, 0, 1),
  note,
  pitch: (v) => int(v, 0, BOUNDS.MAX_PITCH),
  row: (v) => int(v, 0, BOUNDS.MAX_ROW),
  duration16: (v) => int(v, BOUNDS.MIN_DURATION16, BOUNDS.MAX_DURATION16)
}
const BLOCK_FIELDS: Record<string, Validator> = {
  id: (v) => str(v, BOUNDS.MAX_ID_LEN),
  loopId: (v) => str(v, BOUNDS.MAX_ID_LEN),
  startBar: (v) => int(v, 0, BOUNDS.MAX_START_BAR),
  duration: (v) => int(v, BOUNDS.MIN_BLOCK_DURATION, BOUNDS.MAX_BLOCK_DURATION),
  color
}
const LOOP_META: Record<string, Validator> = {
  name: (v) => str(v, BOUNDS.MAX_NAME_LEN),
  length: (v) => choice(v, BOUNDS.LOOP_LENGTHS),
  bpm: (v) => int(v, BOUNDS.MIN_BPM, BOUNDS.MAX_BPM),
  color,
  schemaVersion: (v) => int(v, BOUNDS.MIN_SCHEMA_VERSION, BOUNDS.MAX_SCHEMA_VERSION)
}
const LOOP_META_DEFAULTS: Record<string, unknown> = {
  name: DEFAULT_NAME, length: DEFAULT_LOOP_LENGTH, bpm: null, color: BOUNDS.DEFAULT_LOOP_COLOR, schemaVersion: null
}
const SONG_META: Record<string, Validator> = {
  name: (v) => str(v, BOUNDS.MAX_NAME_LEN),
  bpm: (v) => int(v, BOUNDS.MIN_BPM, BOUNDS.MAX_BPM),
  timeSignature: (v) => choice(v, BOUNDS.TIME_SIGNATURES),
  schemaVersion: (v) => int(v, BOUNDS.MIN_SCHEMA_VERSION, BOUNDS.MAX_SCHEMA_VERSION)
}
const SONG_META_DEFAULTS: Record<string, unknown> = {
  name: DEFAULT_NAME, bpm: BOUNDS.DEFAULT_SONG_BPM, timeSignature: BOUNDS.DEFAULT_TIME_SIGNATURE, schemaVersion: null
}

function cleanEntry (raw: unknown, fields: Record<string, Validator>, required: string[], strict: boolean): Record<string, unknown> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Invalid(`expected an object, got ${describe(raw)}`)
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(raw)) {
    const validate = fields[key]
    if (validate === undefined) {
      if (strict) throw new Invalid(`unknown field '${key}'`)
      continue
    }
    if ((value === null || value === undefined) && !required.includes(key)) continue
    try {
      out[key] = validate(value)
    } catch (err) {
      if (strict || required.includes(key)) throw new Invalid(`${key}: ${(err as Error).message}`)
    }
  }
  for (const key of required) {
    if (!(key in out)) throw new Invalid(`missing required field '${key}'`)
  }
  return out
}

function strictly<T> (where: string, fn: () => T): T {
  try {
    return fn()
  } catch (err) {
    if (err instanceof Invalid) throw new ContentError(`${where}: ${err.message}`)
    throw err
  }
}

/** A chord cell checked against the schema (throws ContentError). */
export function checkChord (cell: ChordCell): ChordCell {
  return strictly('chord', () => cleanEntry(cell, CHORD_FIELDS, ['bar', 'chord'], true)) as unknown as ChordCell
}

/** A step checked against the schema, with its velocity defaulted (throws ContentError). */
export function checkStep (step: Partial<IconStep> & { step: number, soundId: string }): IconStep {
  const out = strictly('step', () => cleanEntry(step, STEP_FIELDS, ['step', 'soundId'], true))
  out.velocity ??= BOUNDS.DEFAULT_VELOCITY
  return out as unknown as IconStep
}

/** A timeline block checked against the schema (throws ContentError). */
export function checkBlock (block: TimelineBlock): TimelineBlock {
  return strictly('block', () => cleanEntry(block, BLOCK_FIELDS, ['id', 'loopId', 'startBar', 'duration'], true)) as unknown as TimelineBlock
}

/** One meta value checked (`kind` loop or song); throws ContentError. */
export function checkMeta (kind: 'loop' | 'song', key: string, value: unknown): unknown {
  const validate = (kind === 'loop' ? LOOP_META : SONG_META)[key]
  if (validate === undefined) throw new ContentError(`unknown ${kind} field '${key}'`)
  return strictly(key, () => validate(value))
}

// --- reading ---------------------------------------------------------------------------------

function plain (value: unknown): unknown {
  return value instanceof Y.Map ? value.toJSON() : value
}

function readMeta (doc: Y.Doc, validators: Record<string, Validator>, defaults: Record<string, unknown>): Record<string, unknown> {
  const meta = doc.getMap(META)
  const out: Record<string, unknown> = {}
  for (const [key, validate] of Object.entries(validators)) {
    const value = meta.get(key)
    try {
      out[key] = value === undefined || value === null ? defaults[key] : validate(value)
    } catch {
      out[key] = defaults[key]
    }
  }
  return out
}

function entries<T> (map: Y.Map<unknown>, read: (key: string, value: unknown) => T): Array<[string, T]> {
  const out: Array<[string, T]> = []
  map.forEach((value, key) => {
    try {
      out.push([key, read(key, plain(value))])
    } catch {
      // a reader skips entries that do not fit the schema
    }
  })
  return out
}

function pick<T extends object> (entry: Record<string, unknown>, keys: readonly string[]): T {
  const out: Record<string, unknown> = {}
  for (const key of keys) if (key in entry) out[key] = entry[key]
  return out as T
}

const CHORD_KEYS = ['bar', 'chord', 'roman', 'root', 'quality'] as const
const STEP_KEYS = ['step', 'soundId', 'velocity', 'note', 'pitch', 'row', 'duration16'] as const
const BLOCK_KEYS = ['id', 'loopId', 'startBar', 'duration', 'color'] as const

function compare (a: unknown[], b: unknown[]): number {
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as string | number
    const y = b[i] as string | number
    if (x < y) return -1
    if (x > y) return 1
  }
  return 0
}

/** A loop document's content in the seed's JSON shape, as the server's REST API returns it. */
export function readLoop (doc: Y.Doc): LoopContent {
  const meta = readMeta(doc, LOOP_META, LOOP_META_DEFAULTS)
  const chords = entries(doc.getMap(CHORDS), (key, value) => {
    if (!BAR_KEY_RE.test(key)) throw new Invalid('bad bar key')
    if (typeof value !== 'object' || value === null) throw new Invalid('not an object')
    return pick<ChordCell>(cleanEntry({ ...value, bar: Number(key) }, CHORD_FIELDS, ['bar', 'chord'], false), CHORD_KEYS)
  }).map(([, cell]) => cell).sort((a, b) => a.bar - b.bar)
  // Entries describing the same cell collapse: the one under its canonical key wins,
  // otherwise the one with the smallest key (the same on every replica).
  const byCell = new Map<string, { rank: [number, string], step: IconStep }>()
  for (const [key, step] of entries(doc.getMap(STEPS), (_key, value) => {
    const clean = cleanEntry(value, STEP_FIELDS, ['step', 'soundId'], false)
    clean.velocity ??= BOUNDS.DEFAULT_VELOCITY
    return pick<IconStep>(clean, STEP_KEYS)
  })) {
    const ident = stepKey(step)
    const rank: [number, string] = [ident === key ? 0 : 1, key]
    const best = byCell.get(ident)
    if (best === undefined || compare(rank, best.rank) < 0) byCell.set(ident, { rank, step })
  }
  const steps = [...byCell.values()].map((v) => v.step).sort((a, b) => compare(
    [a.step, a.row ?? -1, a.soundId, a.pitch ?? -1, a.note ?? ''],
    [b.step, b.row ?? -1, b.soundId, b.pitch ?? -1, b.note ?? '']))
  return {
    ...(meta as Omit<LoopContent, 'chordProgression' | 'iconSequence'>),
    chordProgression: chords.slice(0, BOUNDS.MAX_CHORD_CELLS),
    iconSequence: steps.slice(0, BOUNDS.MAX_STEPS)
  }
}

/** A song document's content in the seed's JSON shape (`totalBars` computed). */
export function readSong (doc: Y.Doc): SongContent {
  const meta = readMeta(doc, SONG_META, SONG_META_DEFAULTS)
  const blocks = entries(doc.getMap(TIMELINE), (key, value) => {
    if (typeof value !== 'object' || value === null) throw new Invalid('not an object')
    return pick<TimelineBlock>(cleanEntry({ ...value, id: key }, BLOCK_FIELDS, ['id', 'loopId', 'startBar', 'duration'], false), BLOCK_KEYS)
  }).map(([, block]) => block)
    .sort((a, b) => a.startBar - b.startBar || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    .slice(0, BOUNDS.MAX_TIMELINE_BLOCKS)
  return {
    ...(meta as Omit<SongContent, 'timeline' | 'totalBars'>),
    timeline: blocks,
    totalBars: blocks.reduce((most, b) => Math.max(most, b.startBar + b.duration), 0)
  }
}
