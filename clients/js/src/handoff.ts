/**
 * What the last holder of the refresh lock stored, read by the next holder in another tab.
 *
 * Tabs share localStorage, but a browser delivers one tab's write to the other tabs' copies a
 * moment later: a tab that waited for the lock may still read the refresh token the previous
 * holder has just used, and a refresh token used twice ends the session (the server revokes its
 * chain). IndexedDB is transactional across tabs: a write completed before the lock is released
 * is what the next holder reads. Where there is no IndexedDB (Node), the lock is per process and
 * the storage is read directly, so nothing is needed.
 */

const DB = 'musicplayground-session'
const STORE = 'handoff'

export interface Handoff {
  get: (key: string) => Promise<string | null>
  put: (key: string, value: string | null) => Promise<void>
}

interface IDBFactoryLike {
  open: (name: string, version?: number) => IDBOpenDBRequest
}

/** The IndexedDB hand-off of this browser, or null where there is none. */
export function browserHandoff (): Handoff | null {
  const factory = (globalThis as { indexedDB?: IDBFactoryLike }).indexedDB
  if (factory === undefined) return null
  let opening: Promise<IDBDatabase> | null = null
  const database = async (): Promise<IDBDatabase> => {
    opening ??= new Promise<IDBDatabase>((resolve, reject) => {
      const request = factory.open(DB, 1)
      request.onupgradeneeded = () => { request.result.createObjectStore(STORE) }
      request.onsuccess = () => resolve(request.result)
      request.onerror = () => reject(request.error ?? new Error('indexedDB.open failed'))
    })
    return await opening
  }
  const run = async <T>(mode: IDBTransactionMode, fn: (store: IDBObjectStore) => IDBRequest | null): Promise<T | null> => {
    const db = await database()
    return await new Promise<T | null>((resolve, reject) => {
      const tx = db.transaction(STORE, mode)
      const request = fn(tx.objectStore(STORE))
      // Resolve on the transaction's completion: then every other tab reads what it wrote.
      tx.oncomplete = () => resolve(request === null ? null : request.result as T | null)
      tx.onerror = () => reject(tx.error ?? new Error('indexedDB transaction failed'))
      tx.onabort = () => reject(tx.error ?? new Error('indexedDB transaction aborted'))
    })
  }
  return {
    get: async (key) => (await run<string>('readonly', (store) => store.get(key))) ?? null,
    put: async (key, value) => {
      await run('readwrite', (store) => value === null ? store.delete(key) : store.put(value, key))
    }
  }
}
