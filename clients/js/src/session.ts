/** Who the kit acts as: an anonymous account made on first use (or a Firebase user), its access
 * token kept fresh, and the rotated refresh token persisted in pluggable storage. */

import { Emitter } from './emitter.js'
import { browserHandoff, type Handoff } from './handoff.js'
import { ApiError } from './errors.js'
import { withLock } from './lock.js'
import { type FetchLike, normalizeBaseUrl, postJson } from './transport.js'
import type { AuthSession, User } from './types.js'

/** Where the session is kept: `localStorage` in browsers, or anything with the same three methods. */
export interface KeyValueStorage {
  getItem: (key: string) => string | null
  setItem: (key: string, value: string) => void
  removeItem: (key: string) => void
}

/** A `KeyValueStorage` in memory (the default in Node: the session lasts as long as the process). */
export class MemoryStorage implements KeyValueStorage {
  private readonly items = new Map<string, string>()
  getItem (key: string): string | null { return this.items.get(key) ?? null }
  setItem (key: string, value: string): void { this.items.set(key, String(value)) }
  removeItem (key: string): void { this.items.delete(key) }
}

/** Firebase sign-in: the app's Firebase SDK supplies the ID tokens (`user.getIdToken(forceRefresh)`). */
export interface FirebaseTokens {
  getIdToken: (forceRefresh?: boolean) => Promise<string | null>
}

export interface SessionOptions {
  /** The API server's origin, e.g. `http://localhost:3001`. */
  baseUrl: string
  /** Where the tokens are kept. Default: `localStorage` where there is one, memory otherwise. */
  storage?: KeyValueStorage
  /** The storage key. Default: `musicplayground:session:<baseUrl>`. */
  storageKey?: string
  /** Refresh the access token this many seconds before it expires (default 60). */
  refreshMarginSeconds?: number
  /** Firebase mode: tokens come from this callback, not from our anonymous accounts. */
  firebase?: FirebaseTokens
  fetch?: FetchLike
}

interface Stored {
  token: string
  refreshToken: string
  /** Epoch milliseconds. */
  expiresAt: number
  /** When to refresh it (epoch ms): the margin before expiry, at most 90 % of its lifetime. */
  refreshAt: number
  /** When these tokens were issued (epoch ms): the newest copy wins. */
  issuedAt: number
  user: User
}

export interface SessionEvents extends Record<string, unknown> {
  /** The signed-in user changed (signed in, linked, refreshed into another account, or signed out: null). */
  change: User | null
}

/** The caller's identity and tokens, shared by every REST call and live document of a client. */
export class Session extends Emitter<SessionEvents> {
  readonly baseUrl: string
  private readonly storage: KeyValueStorage
  private readonly key: string
  private readonly margin: number
  private readonly firebase: FirebaseTokens | undefined
  private readonly fetchFn: FetchLike
  private current: Stored | null
  private inflight: Promise<Stored> | null = null
  private readonly handoff: Handoff | null

  constructor (options: SessionOptions) {
    super()
    this.baseUrl = normalizeBaseUrl(options.baseUrl)
    this.storage = options.storage ?? defaultStorage()
    this.key = options.storageKey ?? `musicplayground:session:${this.baseUrl}`
    this.margin = (options.refreshMarginSeconds ?? 60) * 1000
    this.firebase = options.firebase
    this.fetchFn = options.fetch ?? ((input, init) => globalThis.fetch(input, init))
    this.current = this.load()
    // Only with the browser's own localStorage do other tabs write the same session.
    this.handoff = this.storage === (globalThis as { localStorage?: unknown }).localStorage ? browserHandoff() : null
    this.followOtherTabs()
  }

  /** The signed-in user (null before the first call that needs an account, or in Firebase mode). */
  get user (): User | null {
    return this.current?.user ?? null
  }

  /** Whether there is an account (or Firebase mode). */
  get hasAccount (): boolean {
    return this.firebase !== undefined || this.current !== null || this.load() !== null
  }

  /**
   * A current access token. Makes an anonymous account on first use (unless `create` is false,
   * then null), and refreshes the token when it expires within the margin.
   */
  async getAccessToken (options: { create?: boolean } = {}): Promise<string | null> {
    if (this.firebase !== undefined) return await this.firebase.getIdToken(false)
    // Read the storage every time: another tab may have refreshed (rotated) or signed out.
    const known = this.load()
    if (known === null) {
      if (options.create === false) return null
      return (await this.ensureAccount()).token
    }
    this.adopt(known)
    if (Date.now() < (known.refreshAt ?? known.expiresAt - this.margin)) return known.token
    return (await this.refreshOnce(known.token)).token
  }

  /** Makes (or finds, in storage) the anonymous account; one per storage even with many tabs. */
  async ensureAccount (): Promise<Stored> {
    const known = this.load()
    if (known !== null) return known
    return await this.singleFlight(async () => {
      const stored = await this.newest()
      if (stored !== null) return this.adopt(stored)
      const session = await postJson<AuthSession>(this.fetchFn, `${this.baseUrl}/api/auth/anonymous`, undefined)
      return await this.save(session)
    })
  }

  /**
   * The server refused `token` (`token_expired`): a new token, refreshed once for everyone who
   * saw it refused (concurrent calls and tabs share one refresh). Null if there is no session.
   */
  async tokenRejected (token: string): Promise<string | null> {
    if (this.firebase !== undefined) return await this.firebase.getIdToken(true)
    if (this.load() === null) return null
    return (await this.refreshOnce(token)).token
  }

  /** Refresh now (rotating the refresh token), whatever the access token's age. */
  async refresh (): Promise<void> {
    const known = this.load()
    if (known === null) throw new ApiError(401, 'unauthorized', 'no session to refresh')
    await this.refreshOnce(known.token)
  }

  /**
   * Links the anonymous account to a Firebase identity (`idToken` from the Firebase SDK); the
   * account's loops and songs stay, merged into the existing account if that identity has one.
   */
  async linkAccount (idToken: string): Promise<User> {
    const token = await this.getAccessToken()
    const session = await postJson<AuthSession>(
      this.fetchFn, `${this.baseUrl}/api/auth/link`, { idToken }, { Authorization: `Bearer ${token ?? ''}` })
    return (await withLock(`${this.key}:lock`, async () => await this.save(session))).user
  }

  /** Revokes the refresh token on the server and forgets the session here. */
  async signOut (): Promise<void> {
    const known = this.load()
    this.clear()
    await this.handoff?.put(this.key, null)
    if (known !== null) {
      await postJson(this.fetchFn, `${this.baseUrl}/api/auth/logout`, { refreshToken: known.refreshToken })
    }
  }

  // --- internals ------------------------------------------------------------------------

  private async refreshOnce (rejected: string): Promise<Stored> {
    return await this.singleFlight(async () => {
      // Another tab (or call) may have refreshed meanwhile: its tokens are in storage.
      const stored = await this.newest()
      if (stored === null) throw new ApiError(401, 'unauthorized', 'signed out')
      // Not the token that was refused and not expired: another tab's (or call's) fresh one.
      if (stored.token !== rejected && stored.expiresAt > Date.now()) return this.adopt(stored)
      try {
        const session = await postJson<AuthSession>(
          this.fetchFn, `${this.baseUrl}/api/auth/refresh`, { refreshToken: stored.refreshToken })
        return await this.save(session)
      } catch (err) {
        // A refresh token that is refused (expired, revoked, replayed) ends the session.
        if (err instanceof ApiError && err.status === 401) this.clear()
        throw err
      }
    })
  }

  /** One refresh or sign-up at a time: within this client, and across tabs under a lock. */
  private async singleFlight (fn: () => Promise<Stored>): Promise<Stored> {
    if (this.inflight !== null) return await this.inflight
    const run = withLock(`${this.key}:lock`, fn)
    this.inflight = run
    try {
      return await run
    } finally {
      this.inflight = null
    }
  }

  /** Called under the lock: stores the tokens, and hands them to the next holder (other tabs). */
  private async save (session: AuthSession): Promise<Stored> {
    const now = Date.now()
    const lifetime = session.expiresIn * 1000
    const stored: Stored = {
      token: session.token,
      refreshToken: session.refreshToken,
      expiresAt: now + lifetime,
      refreshAt: now + lifetime - Math.min(this.margin, lifetime * 0.9),
      issuedAt: now,
      user: session.user
    }
    const text = JSON.stringify(stored)
    this.storage.setItem(this.key, text)
    await this.handoff?.put(this.key, text)
    return this.adopt(stored)
  }

  private adopt (stored: Stored): Stored {
    const changed = this.current?.user.id !== stored.user.id
    this.current = stored
    if (changed) this.emit('change', stored.user)
    return stored
  }

  private clear (): void {
    this.storage.removeItem(this.key)
    if (this.current !== null) {
      this.current = null
      this.emit('change', null)
    }
  }

  /** Under the lock: the newer of the storage and the hand-off of the lock's last holder. */
  private async newest (): Promise<Stored | null> {
    const stored = this.load()
    if (this.handoff === null || stored === null) return stored
    const handed = parse(await this.handoff.get(this.key))
    return handed !== null && (handed.issuedAt ?? 0) > (stored.issuedAt ?? 0) ? handed : stored
  }

  private load (): Stored | null {
    return parse(this.storage.getItem(this.key))
  }

  private followOtherTabs (): void {
    const target = globalThis as { addEventListener?: (type: string, fn: (e: { key: string | null }) => void) => void, localStorage?: unknown }
    if (typeof target.addEventListener !== 'function' || target.localStorage !== this.storage) return
    target.addEventListener('storage', (event) => {
      if (event.key !== this.key && event.key !== null) return
      const stored = this.load()
      if (stored === null) this.clear()
      else this.adopt(stored)
    })
  }
}

function parse (raw: string | null): Stored | null {
  if (raw === null) return null
  try {
    const parsed = JSON.parse(raw) as Stored
    return typeof parsed.token === 'string' && typeof parsed.refreshToken === 'string' ? parsed : null
  } catch {
    return null
  }
}

function defaultStorage (): KeyValueStorage {
  try {
    const storage = (globalThis as { localStorage?: KeyValueStorage }).localStorage
    if (storage !== undefined && storage !== null) return storage
  } catch {
    // localStorage access can throw (privacy settings); fall back to memory
  }
  return new MemoryStorage()
}
