/**
 * Live documents: a loop or song as a Yjs document kept in sync with the server over Socket.IO
 * (the y-socket.io wire, docs/realtime.md), with the content in the seed's JSON shape, schema-aware
 * mutators, presence, status and reconnects.
 *
 * The sync is driven here with socket.io-client, yjs and y-protocols' awareness (the encodings
 * are theirs): there is no BroadcastChannel, so nothing a tab does reaches another tab except
 * through the server, and a read-only document never sends an update at all.
 */

import { io, type Socket } from 'socket.io-client'
import { Awareness, applyAwarenessUpdate, encodeAwarenessUpdate, removeAwarenessStates } from 'y-protocols/awareness'
import * as Y from 'yjs'

import { Emitter } from './emitter.js'
import { ApiError, ContentError, LiveDocumentClosed, ReadOnlyError } from './errors.js'
import {
  BOUNDS, CHORDS, META, STEPS, TIMELINE, checkBlock, checkChord, checkMeta, checkStep, readLoop, readSong, stepKey
} from './schema.js'
import type { Session } from './session.js'
import type { ChordCell, Comment, IconStep, LoopContent, PresenceMember, Role, SongContent, TimelineBlock } from './types.js'

/** Origin of every change the server sent (so it is never sent back). */
const REMOTE = Symbol('musicplayground:remote')
/** An empty Yjs update (no structs, empty delete set): what a read-only replica answers. */
const EMPTY_UPDATE = new Uint8Array([0, 0])
const AWARENESS_MIN_INTERVAL_MS = 50 // at most 20 presence messages a second (the server allows 100)
const RETRY_MIN_MS = 1000
const RETRY_MAX_MS = 5000
const RESYNC_DELAY_MS = 1000

/** `connecting` until the first two-way sync, `synced` while in sync, `offline` while
 * disconnected (edits are kept and sent on reconnect), `closed` for good. */
export type LiveStatus = 'connecting' | 'synced' | 'offline' | 'closed'

/** Where the cursor of a person is, in the loop's grid. */
export interface Cursor {
  bar: number
  step: number
  row: number
}

/** Another person's presence as they announce it (awareness: what clients claim). */
export interface Peer {
  clientId: number
  user?: { name?: string, color?: string, [key: string]: unknown }
  cursor?: Cursor | null
  state: Record<string, unknown>
}

/** What one transaction changed. */
export interface ChangeEvent<C> {
  /** `local` for this client's own edits, `remote` for what arrived from the server. */
  origin: 'local' | 'remote'
  /** The content fields that changed (`name`, `bpm`, `iconSequence`, `timeline`…). */
  fields: Array<Extract<keyof C, string>>
  /** The keys that changed per root map: `meta` names, `chords` bars, `steps` step keys, `timeline` block ids. */
  keys: Record<string, string[]>
  /** The content after the change. */
  content: C
}

export interface ServerError {
  code: string
  message: string
}

export interface LiveEvents<C> extends Record<string, unknown> {
  change: ChangeEvent<C>
  status: LiveStatus
  /** Your role, right after connecting and whenever it changes live. */
  'role-changed': { role: Role }
  /** Who is connected (from their tokens, one entry per user). */
  presence: PresenceMember[]
  /** Cursors and names the other clients announce. */
  awareness: Peer[]
  /** You lost access; the document closes (no reconnect). */
  access_revoked: ServerError
  /** The document was deleted; it closes (no reconnect). */
  document_deleted: ServerError
  /** The server instance is restarting; the kit reconnects by itself. */
  'server-shutdown': { message: string }
  comment: { action: 'created' | 'edited' | 'deleted', comment: Comment }
  /** A message of yours the server refused (the connection stays up), e.g. `rate_limited`. */
  error: ServerError
  /** Closed for good (`closed` after close(), or why the server ended it). */
  closed: LiveDocumentClosed
}

export interface OpenOptions {
  /** Open through a share link (read-only, no account needed). */
  shareToken?: string
  /** A document to sync into (default: a new one). */
  doc?: Y.Doc
}

interface Connection {
  baseUrl: string
  session: Session | undefined
}

type Kind = 'loop' | 'song'

/** What loops and songs have in common: the sync, presence, status and events. */
export abstract class LiveDocument<C> extends Emitter<LiveEvents<C>> {
  readonly kind: Kind
  readonly id: string
  /** The Yjs document (for advanced use: edit through the mutators, which follow the schema). */
  readonly doc: Y.Doc
  readonly awareness: Awareness
  private readonly socket: Socket
  private readonly session: Session | undefined
  private readonly shareToken: string | undefined
  private currentRole: Role | null = null
  private currentStatus: LiveStatus = 'connecting'
  private cached: C | null = null
  private memberList: PresenceMember[] = []
  private pendingAcks = 0
  private dirty = false // local edits the server may lack (made offline, or sent unacknowledged before a drop)
  private generation = 0 // counts connections, so acks of a dropped one are ignored
  private replied = false // this connection answered the server's sync-step-1
  private serverVector: Uint8Array | null = null
  private sentEmptyReply = false
  private terminal: LiveDocumentClosed | null = null
  private finished = false
  private retries = 0
  private retryTimer: ReturnType<typeof setTimeout> | null = null
  private tokenRetried = false
  private lastToken: string | null = null
  private awarenessTimer: ReturnType<typeof setTimeout> | null = null
  private lastAwarenessSent = 0
  private pendingKeys: Record<string, Set<string>> = {}
  private readonly syncedWaiters: Array<{ resolve: () => void, reject: (e: Error) => void }> = []

  protected constructor (kind: Kind, id: string, connection: Connection, options: OpenOptions, roots: string[]) {
    super()
    this.kind = kind
    this.id = id
    this.doc = options.doc ?? new Y.Doc()
    this.session = connection.session
    this.shareToken = options.shareToken
    this.awareness = new Awareness(this.doc)
    for (const root of roots) this.observeRoot(root)
    this.doc.on('afterTransaction', (tr: Y.Transaction) => this.afterTransaction(tr))
    this.doc.on('update', (update: Uint8Array, origin: unknown) => this.onLocalUpdate(update, origin))
    this.awareness.on('update', (changes: { added: number[], updated: number[], removed: number[] }, origin: unknown) =>
      this.onAwarenessUpdate(changes, origin))

    this.socket = io(`${connection.baseUrl}/yjs|${kind}:${id}`, {
      transports: ['websocket'],
      forceNew: true,
      autoConnect: false,
      reconnectionDelay: RETRY_MIN_MS,
      reconnectionDelayMax: RETRY_MAX_MS,
      // A function: every (re)connect sends a fresh token, not the one from the start.
      auth: (cb: (data: object) => void) => { this.handshakeAuth().then(cb, () => cb({})) }
    })
    this.wire()
    this.socket.connect()
  }

  // --- state ---------------------------------------------------------------------------------

  /** The content in the seed's JSON shape (read again only after a change). */
  get content (): C {
    this.cached ??= this.read()
    return this.cached
  }

  /** `owner`, `editor` or `viewer`; null until the server said. */
  get role (): Role | null { return this.currentRole }

  /** True unless the role is known to allow writing. */
  get readOnly (): boolean { return this.currentRole === null || this.currentRole === 'viewer' }

  get status (): LiveStatus { return this.currentStatus }

  /** Local edits the server has not confirmed yet (made offline, or in flight). */
  get hasUnsyncedChanges (): boolean {
    return !this.readOnly && (this.dirty || this.pendingAcks > 0)
  }

  /** The members list from the server's `presence` event. */
  get members (): PresenceMember[] { return this.memberList }

  /** The other clients' announced presence (awareness). */
  get peers (): Peer[] {
    const peers: Peer[] = []
    this.awareness.getStates().forEach((state, clientId) => {
      if (clientId === this.doc.clientID) return
      const { user, cursor } = state as Pick<Peer, 'user' | 'cursor'>
      peers.push({ clientId, user, cursor, state })
    })
    return peers
  }

  /** Resolves when the document holds everything the server has and the server everything
   * it holds; at once if it is so now. Rejects with `LiveDocumentClosed` if it closes first. */
  async whenSynced (): Promise<void> {
    if (this.terminal !== null) throw this.terminal
    if (this.currentStatus === 'synced' && !this.hasUnsyncedChanges) return
    await new Promise<void>((resolve, reject) => this.syncedWaiters.push({ resolve, reject }))
  }

  // --- presence --------------------------------------------------------------------------------

  /** Who you are to the others (shown next to your cursor). */
  setUser (user: { name: string, color?: string }): void {
    this.awareness.setLocalStateField('user', user)
  }

  /** Where your cursor is (null: no cursor). */
  setCursor (cursor: Cursor | null): void {
    if (cursor !== null) {
      for (const [key, max] of [['bar', BOUNDS.MAX_CHORD_BAR], ['step', BOUNDS.MAX_STEP], ['row', BOUNDS.MAX_ROW]] as const) {
        const value = cursor[key]
        if (!Number.isInteger(value) || value < 0 || value > max) throw new ContentError(`cursor.${key}: expected an integer in [0, ${max}]`)
      }
    }
    this.awareness.setLocalStateField('cursor', cursor === null ? null : { bar: cursor.bar, step: cursor.step, row: cursor.row })
  }

  // --- life cycle ------------------------------------------------------------------------------

  /** Leaves the document: tells the others you are gone and disconnects. The Y.Doc stays readable. */
  close (): void {
    if (this.terminal !== null) return
    removeAwarenessStates(this.awareness, [this.doc.clientID], 'close')
    this.finish(new LiveDocumentClosed('closed', `${this.kind} ${this.id} was closed`))
  }

  /** Makes several edits one transaction: one update, one message, one change event. */
  transact (fn: () => void): void {
    this.writable()
    this.doc.transact(fn)
  }

  // --- for the kinds ---------------------------------------------------------------------------

  protected abstract read (): C

  protected abstract fieldsOf (keys: Record<string, string[]>): Array<Extract<keyof C, string>>

  /** Throws unless this client may edit. */
  protected writable (): void {
    if (this.terminal !== null) throw new ReadOnlyError('closed', `${this.kind} ${this.id} is closed`)
    if (this.currentRole === null) {
      throw new ReadOnlyError('not_ready', `${this.kind} ${this.id}: the role is not known yet; await whenSynced() first`)
    }
    if (this.currentRole === 'viewer') {
      throw new ReadOnlyError('read_only', `you may only view ${this.kind} ${this.id} (role viewer)`)
    }
  }

  protected setMeta (key: string, value: unknown): void {
    this.writable()
    const meta = this.doc.getMap(META)
    if (value === null) {
      const required = this.kind === 'loop' ? ['name', 'length', 'color'] : ['name', 'bpm', 'timeSignature']
      if (required.includes(key)) throw new ContentError(`${key}: required`)
      if (meta.has(key)) meta.delete(key)
      return
    }
    const checked = checkMeta(this.kind, key, value)
    if (meta.get(key) !== checked) meta.set(key, checked)
  }

  // --- the wire --------------------------------------------------------------------------------

  private async handshakeAuth (): Promise<Record<string, string>> {
    const auth: Record<string, string> = {}
    if (this.shareToken !== undefined) auth.shareToken = this.shareToken
    if (this.session !== undefined) {
      // A share link opens without an account; otherwise an anonymous one is made on first use.
      const token = await this.session.getAccessToken({ create: this.shareToken === undefined })
      if (token !== null) auth.token = token
      this.lastToken = token
    }
    return auth
  }

  private wire (): void {
    const socket = this.socket
    // The server sends role-changed and sync-step-1 before its connect answer: socket.io-client
    // hands them to us before 'connect', so nothing per connection is reset here.
    socket.on('connect', () => {
      this.retries = 0
      if (this.currentStatus !== 'synced') this.setStatus('connecting')
      this.sendAwareness(true)
    })
    socket.on('sync-step-1', (vector: ArrayBuffer | Uint8Array, ack: (update: Uint8Array) => void) => {
      this.serverVector = bytes(vector)
      // A read-only replica answers with nothing: its local state never reaches the server.
      this.sentEmptyReply = this.readOnly
      ack(this.readOnly ? EMPTY_UPDATE : Y.encodeStateAsUpdate(this.doc, this.serverVector))
      this.replied = true
      const generation = this.generation
      // Then fetch what we lack; the server handles our answer above before this.
      socket.emit('sync-step-1', Y.encodeStateVector(this.doc), (update: ArrayBuffer | Uint8Array) => {
        if (generation !== this.generation) return
        Y.applyUpdate(this.doc, bytes(update), REMOTE)
        if (!this.readOnly) this.dirty = false
        this.tokenRetried = false
        this.setStatus('synced')
      })
    })
    socket.on('sync-update', (update: ArrayBuffer | Uint8Array) => {
      Y.applyUpdate(this.doc, bytes(update), REMOTE)
    })
    socket.on('awareness-update', (update: ArrayBuffer | Uint8Array) => {
      applyAwarenessUpdate(this.awareness, bytes(update), REMOTE)
    })
    socket.on('role-changed', ({ role }: { role: Role }) => this.roleChanged(role))
    socket.on('presence', ({ members }: { members: PresenceMember[] }) => {
      this.memberList = members
      this.emit('presence', members)
    })
    socket.on('comment', (event: { action: 'created' | 'edited' | 'deleted', comment: Comment }) => this.emit('comment', event))
    socket.on('server-shutdown', (event: { message: string }) => this.emit('server-shutdown', event))
    socket.on('error', (error: ServerError) => this.serverError(error))
    socket.on('disconnect', (reason: string) => this.disconnected(reason))
    socket.on('connect_error', (err: Error & { data?: { code?: string } }) => this.refused(err))
  }

  private roleChanged (role: Role): void {
    const couldWrite = !this.readOnly
    this.currentRole = role
    // Upgraded after a read-only handshake: give the server what it lacks now.
    if (!couldWrite && !this.readOnly && this.socket.connected && this.sentEmptyReply && this.serverVector !== null) {
      this.sentEmptyReply = false
      this.sendUpdate(Y.encodeStateAsUpdate(this.doc, this.serverVector))
    }
    this.emit('role-changed', { role })
  }

  private serverError (error: ServerError): void {
    switch (error.code) {
      case 'access_revoked':
      case 'document_deleted':
      case 'too_many_refused_updates':
        // The server disconnects next; never reconnect after it.
        this.terminal ??= new LiveDocumentClosed(error.code, error.message)
        if (error.code === 'access_revoked') this.emit('access_revoked', error)
        if (error.code === 'document_deleted') this.emit('document_deleted', error)
        break
      case 'storage_backlog':
      case 'missing_dependencies':
        // The edit was not applied: keep it and resync (the handshake sends it again).
        this.dirty = true
        this.scheduleResync()
        break
    }
    this.emit('error', error)
  }

  private disconnected (reason: string): void {
    if (this.pendingAcks > 0) this.dirty = true
    this.pendingAcks = 0
    this.replied = false
    this.generation++
    // Other clients' presence comes again on reconnect.
    const others = [...this.awareness.getStates().keys()].filter((id) => id !== this.doc.clientID)
    removeAwarenessStates(this.awareness, others, REMOTE)
    if (this.terminal !== null) {
      this.finish(this.terminal)
      return
    }
    this.setStatus('offline')
    // A server-side disconnect is not retried by socket.io-client; with no reason given, we do.
    if (reason === 'io server disconnect') this.scheduleRetry()
  }

  private refused (err: Error & { data?: { code?: string } }): void {
    if (this.terminal !== null) return
    this.setStatus('offline')
    if (this.socket.active) return // unreachable: socket.io-client retries with backoff itself
    const message = err.message
    const code = err.data?.code
    if (code === 'token_expired' || message.startsWith('token expired')) {
      void this.refreshThenRetry(true)
    } else if (code === 'invalid_token' || message.startsWith('invalid token')) {
      if (this.tokenRetried) {
        this.finish(new LiveDocumentClosed('unauthorized', message))
      } else {
        this.tokenRetried = true
        void this.refreshThenRetry(false)
      }
    } else if (message.endsWith('not found')) {
      this.finish(new LiveDocumentClosed('not_found', message))
    } else if (message.startsWith('unknown namespace')) {
      this.finish(new LiveDocumentClosed('invalid', message))
    } else {
      // Shutting down, room full, too many connections, sign-in unavailable: try again later.
      this.scheduleRetry()
    }
  }

  private async refreshThenRetry (expired: boolean): Promise<void> {
    try {
      if (this.session !== undefined && this.lastToken !== null) await this.session.tokenRejected(this.lastToken)
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        this.finish(new LiveDocumentClosed('unauthorized', `signed out: ${err.error}`))
        return
      }
    }
    this.scheduleRetry(expired && this.retries === 0 ? 0 : undefined)
  }

  private scheduleRetry (delay?: number): void {
    if (this.retryTimer !== null || this.terminal !== null) return
    const backoff = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** this.retries) * (0.5 + Math.random())
    this.retries++
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null
      if (this.terminal === null && !this.socket.connected) this.socket.connect()
    }, delay ?? backoff)
  }

  private scheduleResync (): void {
    if (this.retryTimer !== null) return
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null
      if (this.terminal !== null) return
      this.socket.disconnect()
      this.socket.connect()
    }, RESYNC_DELAY_MS)
  }

  private finish (reason: LiveDocumentClosed): void {
    if (this.finished) return
    this.finished = true
    this.terminal = reason
    if (this.retryTimer !== null) clearTimeout(this.retryTimer)
    if (this.awarenessTimer !== null) clearTimeout(this.awarenessTimer)
    this.retryTimer = null
    this.socket.disconnect()
    this.awareness.destroy()
    this.setStatus('closed')
    for (const waiter of this.syncedWaiters.splice(0)) waiter.reject(reason)
    this.emit('closed', reason)
  }

  private setStatus (status: LiveStatus): void {
    if (this.currentStatus === status && status !== 'synced') return
    const changed = this.currentStatus !== status
    this.currentStatus = status
    if (changed) this.emit('status', status)
    if (status === 'synced' && !this.hasUnsyncedChanges) {
      for (const waiter of this.syncedWaiters.splice(0)) waiter.resolve()
    }
  }

  private onLocalUpdate (update: Uint8Array, origin: unknown): void {
    if (origin === REMOTE || this.readOnly) return // a viewer's changes never leave this replica
    if (this.socket.connected && this.replied) {
      this.sendUpdate(update)
    } else {
      this.dirty = true // sent by the next handshake
    }
  }

  private sendUpdate (update: Uint8Array): void {
    const generation = this.generation
    this.pendingAcks++
    this.socket.emit('sync-update', update, () => {
      if (generation !== this.generation) return
      this.pendingAcks--
      if (this.pendingAcks === 0 && this.currentStatus === 'synced') this.setStatus('synced')
    })
  }

  private onAwarenessUpdate (changes: { added: number[], updated: number[], removed: number[] }, origin: unknown): void {
    if (origin !== REMOTE) {
      const mine = [...changes.added, ...changes.updated, ...changes.removed].includes(this.doc.clientID)
      if (mine) this.sendAwareness(origin === 'close')
    }
    this.emit('awareness', this.peers)
  }

  private sendAwareness (now: boolean): void {
    if (!this.socket.connected || this.awareness.getLocalState() === undefined) return
    const wait = this.lastAwarenessSent + AWARENESS_MIN_INTERVAL_MS - Date.now()
    if (!now && wait > 0) {
      this.awarenessTimer ??= setTimeout(() => {
        this.awarenessTimer = null
        this.sendAwareness(true)
      }, wait)
      return
    }
    this.lastAwarenessSent = Date.now()
    this.socket.emit('awareness-update', encodeAwarenessUpdate(this.awareness, [this.doc.clientID]))
  }

  private observeRoot (name: string): void {
    this.doc.getMap(name).observeDeep((events) => {
      const keys = (this.pendingKeys[name] ??= new Set())
      for (const event of events) {
        if (event.path.length > 0) keys.add(String(event.path[0]))
        else for (const key of event.keys.keys()) keys.add(key)
      }
    })
  }

  private afterTransaction (tr: Y.Transaction): void {
    const touched = this.pendingKeys
    this.pendingKeys = {}
    const names = Object.keys(touched)
    if (names.length === 0) return
    this.cached = null
    const keys: Record<string, string[]> = {}
    for (const name of names) keys[name] = [...(touched[name] ?? [])]
    this.emit('change', { origin: tr.local ? 'local' : 'remote', fields: this.fieldsOf(keys), keys, content: this.content })
  }
}

/** A live loop: `meta` (name, length, bpm, color), `chords` and `steps`. */
export class LiveLoop extends LiveDocument<LoopContent> {
  constructor (id: string, connection: Connection, options: OpenOptions = {}) {
    super('loop', id, connection, options, [META, CHORDS, STEPS])
  }

  protected read (): LoopContent { return readLoop(this.doc) }

  protected fieldsOf (keys: Record<string, string[]>): Array<Extract<keyof LoopContent, string>> {
    const fields: Array<Extract<keyof LoopContent, string>> = []
    for (const key of keys[META] ?? []) {
      if (['name', 'length', 'bpm', 'color', 'schemaVersion'].includes(key)) fields.push(key as Extract<keyof LoopContent, string>)
    }
    if ((keys[CHORDS]?.length ?? 0) > 0) fields.push('chordProgression')
    if ((keys[STEPS]?.length ?? 0) > 0) fields.push('iconSequence')
    return fields
  }

  setName (name: string): void { this.setMeta('name', name) }
  setLength (length: 1 | 2 | 4 | 8): void { this.setMeta('length', length) }
  /** null clears the loop's own tempo. */
  setBpm (bpm: number | null): void { this.setMeta('bpm', bpm) }
  setColor (color: string): void { this.setMeta('color', color) }
  setSchemaVersion (version: number | null): void { this.setMeta('schemaVersion', version) }

  /** Sets (or with null clears) the chord at `bar`. A chord cell is replaced as a whole. */
  setChord (bar: number, cell: Omit<ChordCell, 'bar'> | null): void {
    this.writable()
    const chords = this.doc.getMap(CHORDS)
    if (cell === null) {
      checkChord({ bar, chord: 'x' })
      chords.delete(String(bar))
      return
    }
    const { bar: _bar, ...value } = checkChord({ ...cell, bar })
    chords.set(String(bar), value)
  }

  /** Whether the cell holds a step. */
  hasStep (cell: Pick<IconStep, 'step' | 'soundId'> & Partial<IconStep>): boolean {
    return this.doc.getMap(STEPS).has(stepKey(cell))
  }

  /** Toggles one sequencer cell; returns whether it is on afterwards. Two people toggling the
   * same cell on at once make one step (the cell is the key). */
  toggleStep (cell: Pick<IconStep, 'step' | 'soundId'> & Partial<IconStep>): boolean {
    const on = !this.hasStep(cell)
    this.setStep(cell, on)
    return on
  }

  /** Turns one cell on (with its attributes; velocity defaults to 0.8) or off. */
  setStep (cell: Pick<IconStep, 'step' | 'soundId'> & Partial<IconStep>, on: boolean): void {
    this.writable()
    const step = checkStep(cell)
    const key = stepKey(step)
    const steps = this.doc.getMap(STEPS)
    if (!on) {
      if (steps.has(key)) steps.delete(key)
      return
    }
    const current = steps.get(key)
    if (current instanceof Y.Map) {
      this.doc.transact(() => {
        for (const [attr, value] of Object.entries(step)) if (current.get(attr) !== value) current.set(attr, value)
      })
      return
    }
    steps.set(key, new Y.Map(Object.entries(step)))
  }

  /** Changes attributes of a step that is on (velocity, duration16); a concurrent edit of
   * another attribute survives. */
  updateStep (cell: Pick<IconStep, 'step' | 'soundId'> & Partial<IconStep>, attrs: { velocity?: number, duration16?: number | null }): void {
    this.writable()
    const key = stepKey(checkStep(cell))
    const current = this.doc.getMap(STEPS).get(key)
    if (!(current instanceof Y.Map)) throw new ContentError(`no step at ${key}`)
    const checked = checkStep({ ...(current.toJSON() as IconStep), ...attrs, duration16: attrs.duration16 ?? undefined })
    this.doc.transact(() => {
      if (attrs.velocity !== undefined) current.set('velocity', checked.velocity)
      if (attrs.duration16 === null) current.delete('duration16')
      else if (attrs.duration16 !== undefined) current.set('duration16', checked.duration16)
    })
  }

  /** Moves a step to another cell (another step, row, pitch or note): delete the old key, set the new. */
  moveStep (from: Pick<IconStep, 'step' | 'soundId'> & Partial<IconStep>, to: Partial<Pick<IconStep, 'step' | 'row' | 'pitch' | 'note'>>): void {
    this.writable()
    const steps = this.doc.getMap(STEPS)
    const oldKey = stepKey(checkStep(from))
    const current = steps.get(oldKey)
    if (!(current instanceof Y.Map)) throw new ContentError(`no step at ${oldKey}`)
    const moved = checkStep({ ...(current.toJSON() as IconStep), ...to })
    this.doc.transact(() => {
      steps.delete(oldKey)
      steps.set(stepKey(moved), new Y.Map(Object.entries(moved)))
    })
  }
}

/** A live song: `meta` (name, bpm, timeSignature) and the `timeline` blocks. */
export class LiveSong extends LiveDocument<SongContent> {
  constructor (id: string, connection: Connection, options: OpenOptions = {}) {
    super('song', id, connection, options, [META, TIMELINE])
  }

  protected read (): SongContent { return readSong(this.doc) }

  protected fieldsOf (keys: Record<string, string[]>): Array<Extract<keyof SongContent, string>> {
    const fields: Array<Extract<keyof SongContent, string>> = []
    for (const key of keys[META] ?? []) {
      if (['name', 'bpm', 'timeSignature', 'schemaVersion'].includes(key)) fields.push(key as Extract<keyof SongContent, string>)
    }
    if ((keys[TIMELINE]?.length ?? 0) > 0) fields.push('timeline', 'totalBars')
    return fields
  }

  setName (name: string): void { this.setMeta('name', name) }
  setBpm (bpm: number): void { this.setMeta('bpm', bpm) }
  setTimeSignature (signature: '4/4' | '3/4'): void { this.setMeta('timeSignature', signature) }
  setSchemaVersion (version: number | null): void { this.setMeta('schemaVersion', version) }

  /** Adds a block, or changes the attributes of the block with that id (attribute by
   * attribute, so another person's concurrent move or recolour of it survives). */
  setBlock (block: TimelineBlock): void {
    this.writable()
    const { id, ...attrs } = checkBlock(block)
    const timeline = this.doc.getMap(TIMELINE)
    const current = timeline.get(id)
    if (!(current instanceof Y.Map)) {
      timeline.set(id, new Y.Map(Object.entries(attrs)))
      return
    }
    this.doc.transact(() => {
      for (const key of [...current.keys()]) if (!(key in attrs)) current.delete(key)
      for (const [key, value] of Object.entries(attrs)) if (current.get(key) !== value) current.set(key, value)
    })
  }

  /** Changes some attributes of an existing block. */
  updateBlock (id: string, attrs: Partial<Omit<TimelineBlock, 'id'>>): void {
    const current = this.doc.getMap(TIMELINE).get(id)
    if (!(current instanceof Y.Map)) throw new ContentError(`no block ${id}`)
    this.setBlock({ ...(current.toJSON() as Omit<TimelineBlock, 'id'>), ...attrs, id })
  }

  removeBlock (id: string): void {
    this.writable()
    this.doc.getMap(TIMELINE).delete(id)
  }
}

function bytes (data: ArrayBuffer | Uint8Array): Uint8Array {
  return data instanceof Uint8Array ? data : new Uint8Array(data)
}
