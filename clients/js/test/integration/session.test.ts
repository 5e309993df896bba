/**
 * Sessions against a real server (ACCESS_TOKEN_TTL=60, Firebase enabled with a fake certificate
 * server): anonymous on first use, refresh before expiry and on token_expired, single-flight
 * across concurrent calls and across "tabs" sharing one storage, Firebase mode, linking.
 */

import { beforeAll, describe, expect, it } from 'vitest'

import { ApiError, MemoryStorage, Session, createClient, type MusicPlaygroundClient } from '../../src/index.js'
import { SERVER, control, needServer, sleep } from '../helpers.js'

interface Stored { token: string, refreshToken: string, expiresAt: number, refreshAt: number, user: { id: string } }

/** A fetch that counts the requests to each path. */
function countingFetch (): { fetch: (input: string, init?: RequestInit) => Promise<Response>, count: (path: string) => number } {
  const counts = new Map<string, number>()
  return {
    fetch: async (input, init) => {
      const path = new URL(input).pathname
      counts.set(path, (counts.get(path) ?? 0) + 1)
      return await fetch(input, init)
    },
    count: (path) => counts.get(path) ?? 0
  }
}

const KEY = (): string => `musicplayground:session:${SERVER}`

function stored (storage: MemoryStorage): Stored {
  return JSON.parse(storage.getItem(KEY())!) as Stored
}

/** Replaces the stored access token with one the server signed that expires in `seconds`
 * (negative: already expired), keeping the refresh token. `claimedExpiry`: what the kit believes. */
async function plantToken (storage: MemoryStorage, seconds: number, claimedExpiry = seconds): Promise<string> {
  const current = stored(storage)
  const { token } = await control<{ token: string }>('mint-token', { userId: current.user.id, expiresIn: seconds })
  const expiresAt = Date.now() + claimedExpiry * 1000
  storage.setItem(KEY(), JSON.stringify({ ...current, token, expiresAt, refreshAt: expiresAt - 60_000 }))
  return token
}

beforeAll(() => needServer())

describe('anonymous sessions', () => {
  it('makes one anonymous account on first use and keeps it in the storage', async () => {
    const storage = new MemoryStorage()
    const { fetch: f, count } = countingFetch()
    const client = createClient({ baseUrl: SERVER, storage, fetch: f })
    expect(client.session.user).toBeNull()
    const [a, b] = await Promise.all([client.api.users.me(), client.api.users.me()])
    expect(a.id).toBe(b.id)
    expect(count('/api/auth/anonymous')).toBe(1)
    // Another tab (same storage) is the same person.
    const tab = createClient({ baseUrl: SERVER, storage, fetch: f })
    expect((await tab.api.users.me()).id).toBe(a.id)
    expect(count('/api/auth/anonymous')).toBe(1)
  })

  it('refreshes before expiry, with the server\'s short ACCESS_TOKEN_TTL', async () => {
    const storage = new MemoryStorage()
    const { fetch: f, count } = countingFetch()
    // TTL 60 s: refreshed 54 s before expiry (the margin is at most 90 % of the lifetime).
    const client = createClient({ baseUrl: SERVER, storage, fetch: f })
    await client.api.users.me()
    const first = stored(storage)
    await client.api.users.me()
    expect(count('/api/auth/refresh')).toBe(0)
    await sleep(6500)
    await client.api.users.me()
    expect(count('/api/auth/refresh')).toBe(1)
    await client.api.users.me()
    expect(count('/api/auth/refresh')).toBe(1)
    const second = stored(storage)
    expect(second.refreshToken).not.toBe(first.refreshToken) // rotated and persisted
    expect(second.token).not.toBe(first.token)
  })

  it('refreshes on token_expired and retries, once for all concurrent calls', async () => {
    const storage = new MemoryStorage()
    const { fetch: f, count } = countingFetch()
    const client = createClient({ baseUrl: SERVER, storage, fetch: f, refreshMarginSeconds: 5 })
    const me = await client.api.users.me()
    // The kit believes the token has an hour left (a skewed clock); the server knows it expired.
    const expired = await plantToken(storage, -30, 3600)
    const direct = await fetch(`${SERVER}/api/users/me`, { headers: { Authorization: `Bearer ${expired}` } })
    expect(direct.status).toBe(401)
    expect(((await direct.json()) as { code: string }).code).toBe('token_expired')
    const fresh = createClient({ baseUrl: SERVER, storage, fetch: f, refreshMarginSeconds: 5 })
    const users = await Promise.all(Array.from({ length: 8 }, async () => await fresh.api.users.me()))
    expect(users.every((u) => u.id === me.id)).toBe(true)
    expect(count('/api/auth/refresh')).toBe(1)
  })

  it('two tabs sharing one storage refresh once, and the rotated token keeps working', async () => {
    const storage = new MemoryStorage()
    const { fetch: f, count } = countingFetch()
    const tabA = createClient({ baseUrl: SERVER, storage, fetch: f })
    await tabA.api.users.me()
    const tabB = createClient({ baseUrl: SERVER, storage, fetch: f })
    await plantToken(storage, 10) // inside the 60 s margin: both tabs want to refresh now
    await Promise.all([tabA.api.users.me(), tabB.api.users.me(), tabA.api.loops.list(), tabB.api.loops.list()])
    expect(count('/api/auth/refresh')).toBe(1)
    // A replayed refresh token would have revoked the whole chain; this one still refreshes.
    await tabB.session.refresh()
    expect(count('/api/auth/refresh')).toBe(2)
    expect((await tabA.api.users.me()).isAnonymous).toBe(true)
  })

  it('signs out: the refresh token is revoked', async () => {
    const storage = new MemoryStorage()
    const client = createClient({ baseUrl: SERVER, storage })
    await client.api.users.me()
    const { refreshToken } = stored(storage)
    await client.session.signOut()
    expect(storage.getItem(KEY())).toBeNull()
    expect(client.session.user).toBeNull()
    await expect(client.api.auth.refresh(refreshToken)).rejects.toMatchObject({ status: 401 })
  })

  it('a refresh token the server refuses ends the session', async () => {
    const storage = new MemoryStorage()
    const client = createClient({ baseUrl: SERVER, storage })
    await client.api.users.me()
    const { refreshToken } = stored(storage)
    await client.api.auth.logout(refreshToken) // revoked behind the session's back
    await plantToken(storage, 10)
    const err = await client.api.users.me().catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ApiError)
    expect((err as ApiError).status).toBe(401)
    expect(storage.getItem(KEY())).toBeNull()
  })
})

describe('Firebase', () => {
  let linked: MusicPlaygroundClient

  it('Firebase mode: getIdToken() supplies the token, and is forced on token_expired', async () => {
    const calls: boolean[] = []
    const client = createClient({
      baseUrl: SERVER,
      storage: new MemoryStorage(),
      firebase: {
        getIdToken: async (force = false) => {
          calls.push(force)
          return (await control<{ idToken: string }>('firebase-token', { uid: 'fb-user-1', expired: !force })).idToken
        }
      }
    })
    const me = await client.api.users.me()
    expect(me.isAnonymous).toBe(false)
    expect(calls).toEqual([false, true]) // the first token had expired: refreshed through Firebase
    expect(client.session.user).toBeNull() // no session of ours is kept in Firebase mode
  })

  it('linkAccount() keeps the anonymous account\'s work', async () => {
    linked = createClient({ baseUrl: SERVER, storage: new MemoryStorage() })
    const loop = await linked.api.loops.create({ name: 'Before linking', length: 2 })
    const anonymous = await linked.api.users.me()
    const { idToken } = await control<{ idToken: string }>('firebase-token', { uid: 'fb-user-2' })
    const user = await linked.linkAccount(idToken)
    expect(user.isAnonymous).toBe(false)
    expect(linked.session.user?.isAnonymous).toBe(false)
    expect((await linked.api.users.me()).id).toBe(user.id)
    expect((await linked.api.loops.get(loop.id)).userId).toBe(user.id)
    expect(anonymous.isAnonymous).toBe(true)
  })

  it('a Session alone works as the token source of other code', async () => {
    const session = new Session({ baseUrl: SERVER, storage: new MemoryStorage() })
    const token = await session.getAccessToken()
    expect(typeof token).toBe('string')
    expect(await session.getAccessToken({ create: false })).toBe(token)
    expect(await new Session({ baseUrl: SERVER, storage: new MemoryStorage() }).getAccessToken({ create: false })).toBeNull()
  })
})
