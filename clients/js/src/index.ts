/** @musicplayground/client: the Music Playground client kit. */
export { MusicPlaygroundClient, createClient, type ClientOptions } from './client.js'
export { ApiError, ContentError, LiveDocumentClosed, ReadOnlyError } from './errors.js'
export { ApiClient, type ApiClientOptions, type CallArgs, type OperationId } from './http.js'
export { OPERATIONS, type OperationInfo } from './generated/operations.js'
export {
  LiveDocument, LiveLoop, LiveSong,
  type ChangeEvent, type Cursor, type LiveEvents, type LiveStatus, type OpenOptions, type Peer, type ServerError
} from './live.js'
export { MIGRATION_FLAGS, MIGRATION_JOURNAL, migrateToBackend, type MigrateOptions, type MigrationResult } from './migrate.js'
export { BOUNDS, readLoop, readSong, stepKey } from './schema.js'
export { MemoryStorage, Session, type FirebaseTokens, type KeyValueStorage, type SessionOptions } from './session.js'
export {
  ApiStorageAdapter, COMPOSER_KEYS, LocalStorageAdapter, isLocalId,
  type LocalStorageAdapterOptions, type StorageAdapter, type StoredLoop, type StoredSong
} from './storage.js'
export type * from './types.js'
