/** Mutual exclusion for the session's refresh: across tabs with the Web Locks API where the
 * platform has it (every current browser), within the process otherwise (Node). */

interface LockManagerLike {
  request: <T>(name: string, callback: () => Promise<T>) => Promise<T>
}

const local = new Map<string, Promise<unknown>>()

/** Runs `fn` while holding the lock `name`; nobody else holding it (this tab, other tabs) runs meanwhile. */
export async function withLock<T> (name: string, fn: () => Promise<T>): Promise<T> {
  const locks = (globalThis as { navigator?: { locks?: LockManagerLike } }).navigator?.locks
  if (locks !== undefined && typeof locks.request === 'function') {
    return await locks.request(name, fn)
  }
  const previous = local.get(name) ?? Promise.resolve()
  const run = previous.then(fn, fn)
  const tail = run.catch(() => undefined)
  local.set(name, tail)
  try {
    return await run
  } finally {
    if (local.get(name) === tail) local.delete(name)
  }
}
