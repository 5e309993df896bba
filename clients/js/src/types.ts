/** Names for the API's types (generated from /api/openapi.json) and the content shapes. */

import type { components, operations } from './generated/openapi.js'

export type { components, operations, paths } from './generated/openapi.js'

type Schemas = components['schemas']

/** A loop as the API returns it (with content). */
export type Loop = Schemas['LoopPublic']
/** `GET /api/loops/{id}`: a loop with the samples its steps use. */
export type LoopDetail = Schemas['LoopDetail']
/** A loop in a listing without `?include=content`. */
export type LoopSummary = Schemas['LoopSummary']
export type LoopCreate = Schemas['LoopCreate']
export type LoopUpdate = Schemas['LoopUpdate']
export type Song = Schemas['SongPublic']
/** `GET /api/songs/{id}` (`?include=loops` fills `loops` and `missingLoopIds`). */
export type SongDetail = Schemas['SongDetail']
/** `POST` / `PATCH /api/songs`: the song and its `warnings` (e.g. `unknown_loop`). */
export type SongWritten = Schemas['SongWritten']
export type SongSummary = Schemas['SongSummary']
export type SongCreate = Schemas['SongCreate']
export type SongUpdate = Schemas['SongUpdate']
export type AuthSession = Schemas['AuthSession']
export type User = Schemas['UserPublic']
export type Comment = Schemas['CommentPublic']
export type PresenceMember = Schemas['PresenceMember']
export type MigrateRequest = Schemas['MigrateRequest']
export type MigrateResponse = Schemas['MigrateResponse']
export type ErrorBody = Schemas['ErrorBody']

/** Roles on a document. */
export type Role = 'owner' | 'editor' | 'viewer'

/** One chord cell of a loop (`bar` is the position in beats). */
export interface ChordCell {
  bar: number
  chord: string
  roman?: string
  root?: string
  quality?: string
}

/** One sequencer step (`step` in sixteenths). */
export interface IconStep {
  step: number
  soundId: string
  velocity: number
  note?: string
  pitch?: number
  row?: number
  duration16?: number
}

/** One block of a song's timeline. */
export interface TimelineBlock {
  id: string
  loopId: string
  startBar: number
  duration: number
  color?: string
}

/** A loop's content, in the seed's JSON shape (what the API returns for a loop's content fields). */
export interface LoopContent {
  name: string
  length: 1 | 2 | 4 | 8
  bpm: number | null
  color: string
  schemaVersion: number | null
  chordProgression: ChordCell[]
  iconSequence: IconStep[]
}

/** A song's content, in the seed's JSON shape (`totalBars` is computed). */
export interface SongContent {
  name: string
  bpm: number
  timeSignature: '4/4' | '3/4'
  schemaVersion: number | null
  timeline: TimelineBlock[]
  totalBars: number
}

/** The JSON body of a successful answer of an operation. */
export type OperationResult<K extends keyof operations> = SuccessBody<operations[K]['responses']>

type SuccessBody<R> = {
  [S in keyof R]: S extends 200 | 201 ? JsonOf<R[S]> : never
}[keyof R]

type JsonOf<T> = T extends { content: { 'application/json': infer B } }
  ? B
  : T extends { content: { 'text/html': infer H } }
    ? H
    : unknown
