/** The kit in one object: a session, the REST API, live documents, storage adapters, migration. */

import { ApiClient } from './http.js'
import { LiveLoop, LiveSong, type OpenOptions } from './live.js'
import { type MigrateOptions, type MigrationResult, migrateToBackend } from './migrate.js'
import { Session, type SessionOptions } from './session.js'
import { ApiStorageAdapter, LocalStorageAdapter, type LocalStorageAdapterOptions, type StorageAdapter } from './storage.js'
import type { User } from './types.js'

export type ClientOptions = SessionOptions

export class MusicPlaygroundClient {
  readonly session: Session
  readonly api: ApiClient

  constructor (options: ClientOptions) {
    this.session = new Session(options)
    this.api = new ApiClient({ baseUrl: options.baseUrl, session: this.session, fetch: options.fetch })
  }

  /** A live loop (`shareToken`: open it read-only through a share link). */
  openLoop (id: string, options: OpenOptions = {}): LiveLoop {
    return new LiveLoop(id, { baseUrl: this.api.baseUrl, session: this.session }, options)
  }

  /** A live song. */
  openSong (id: string, options: OpenOptions = {}): LiveSong {
    return new LiveSong(id, { baseUrl: this.api.baseUrl, session: this.session }, options)
  }

  /** Links the anonymous account to a Firebase identity (keeping its work). */
  async linkAccount (idToken: string): Promise<User> {
    return await this.session.linkAccount(idToken)
  }

  /** The seed's storage switch: the API once `useBackend` is set (by a migration), localStorage before. */
  storage (options: LocalStorageAdapterOptions = {}): StorageAdapter {
    const store = options.storage ?? (globalThis as { localStorage?: { getItem: (k: string) => string | null } }).localStorage
    return store?.getItem('useBackend') === 'true' ? new ApiStorageAdapter(this.api) : new LocalStorageAdapter(options)
  }

  /** The seed's migration flow (see `migrateToBackend`). */
  async migrateToBackend (options: Omit<MigrateOptions, 'api'> = {}): Promise<MigrationResult> {
    return await migrateToBackend({ ...options, api: this.api })
  }
}

/** `new MusicPlaygroundClient(options)`. */
export function createClient (options: ClientOptions): MusicPlaygroundClient {
  return new MusicPlaygroundClient(options)
}
