/**
 * Every REST operation through the kit, against a real server; a fetch wrapper records which
 * operation each request hit, and the last test checks that none was left out.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { ApiError, OPERATIONS, type MusicPlaygroundClient, type OperationId } from '../../src/index.js'
import { SERVER, control, needServer, newClient, wav } from '../helpers.js'

const hit = new Set<string>()
// Literal paths first: /api/users/me before /api/users/{username}.
const routes = Object.entries(OPERATIONS).map(([id, info]) => ({
  id,
  method: info.method,
  params: (info.path.match(/\{/g) ?? []).length,
  pattern: new RegExp(`^${info.path.replace(/\{[^}]+\}/g, '[^/]+')}$`)
})).sort((a, b) => a.params - b.params)

/** A fetch that notes the operation of every request (method + path template). */
const recordingFetch = async (input: string, init?: RequestInit): Promise<Response> => {
  const url = new URL(input)
  const method = init?.method ?? 'GET'
  const route = routes.find((r) => r.method === method && r.pattern.test(url.pathname))
  if (route !== undefined) hit.add(route.id)
  return await fetch(input, init)
}

function client (): MusicPlaygroundClient {
  return newClient({ fetch: recordingFetch })
}

const unique = (): string => Math.random().toString(36).slice(2, 10)

let owner: MusicPlaygroundClient
let friend: MusicPlaygroundClient
let friendName: string

beforeAll(async () => {
  needServer()
  owner = client()
  friend = client()
  friendName = `friend_${unique()}`
  await friend.api.users.updateMe({ username: friendName, displayName: 'Friend' })
})

describe('accounts', () => {
  it('signs up anonymously on first use and edits the profile', async () => {
    const me = await owner.api.users.me()
    expect(me.isAnonymous).toBe(true)
    expect(owner.session.user?.id).toBe(me.id)
    const name = `owner_${unique()}`
    const updated = await owner.api.users.updateMe({ username: name, displayName: 'Owner', bio: 'hi' })
    expect(updated.username).toBe(name)
    const profile = await friend.api.users.profile(name)
    expect(profile.displayName).toBe('Owner')
  })

  it('calls the auth endpoints directly', async () => {
    const bare = client()
    const session = await bare.api.auth.anonymous()
    const refreshed = await bare.api.auth.refresh(session.refreshToken)
    expect(refreshed.user.id).toBe(session.user.id)
    expect(await bare.api.auth.logout(refreshed.refreshToken)).toEqual({ success: true })
    await expect(bare.api.auth.refresh(refreshed.refreshToken)).rejects.toMatchObject({ status: 401 })
  })
})

describe('loops', () => {
  it('create, list, get, update, presence, fork, delete', async () => {
    const loop = await owner.api.loops.create({ name: 'REST loop', length: 4, bpm: 100, iconSequence: [{ step: 0, soundId: 'drum-kick' }] })
    expect(loop.iconSequence).toEqual([{ step: 0, soundId: 'drum-kick', velocity: 0.8 }])
    const listed = await owner.api.loops.list({ include: 'content', limit: 100 })
    expect(listed.loops.some((l) => l.id === loop.id)).toBe(true)
    expect((await owner.api.getLoops()).total).toBeGreaterThan(0)
    const got = await owner.api.loops.get(loop.id)
    expect(got.samples).toEqual([])
    const updated = await owner.api.loops.update(loop.id, { bpm: null, name: 'Renamed', isPublic: true })
    expect(updated.bpm).toBeNull()
    expect((await owner.api.loops.presence(loop.id)).members).toEqual([])
    const fork = await friend.api.loops.fork(loop.id)
    expect(fork.forkedFrom).toBe(loop.id)
    expect(await owner.api.loops.delete(loop.id)).toEqual({ success: true })
    const gone = await owner.api.loops.get(loop.id).catch((e: unknown) => e)
    expect(gone).toBeInstanceOf(ApiError)
    expect(gone).toMatchObject({ status: 404, code: 'not_found' })
  })

  it('shares, collaborators and comments', async () => {
    const loop = await owner.api.loops.create({ name: 'Shared', length: 2 })
    const link = await owner.api.loops.share(loop.id, { expiresIn: 1 })
    expect(link.shareUrl).toContain(link.shareToken)
    expect((await owner.api.loops.shares(loop.id)).shares).toHaveLength(1)
    const guest = client()
    const shared = await guest.api.shares.get(link.shareToken)
    expect(shared.resourceType).toBe('loop')
    expect(guest.session.user).toBeNull() // reading a share link needs no account
    expect(await guest.api.pages.loop(link.shareToken)).toContain('<html')
    expect(await guest.api.pages.embed(link.shareToken)).toContain('<html')
    expect((await owner.api.shares.revoke(link.shareToken))).toEqual({ success: true })

    await owner.api.loops.addCollaborator(loop.id, { username: friendName, role: 'viewer' })
    await owner.api.loops.updateCollaborator(loop.id, friendName, { role: 'editor' })
    expect((await friend.api.loops.collaborators(loop.id)).collaborators).toMatchObject([{ username: friendName, role: 'editor' }])
    const comment = await friend.api.loops.comment(loop.id, { body: 'love it', anchor: { bar: 1 } })
    expect((await owner.api.loops.comments(loop.id)).comments.map((c) => c.id)).toEqual([comment.id])
    expect((await friend.api.comments.edit(comment.id, { body: 'really' })).body).toBe('really')
    expect(await friend.api.comments.delete(comment.id)).toEqual({ success: true })
    expect(await owner.api.loops.removeCollaborator(loop.id, friendName)).toEqual({ success: true })
  })
})

describe('songs', () => {
  it('every song operation, with the loops of a song in one request', async () => {
    const loop = await owner.api.loops.create({ name: 'In a song', length: 4 })
    const song = await owner.api.songs.create({
      name: 'REST song',
      timeline: [{ id: 'b1', loopId: loop.id, startBar: 0, duration: 4 }, { id: 'b2', loopId: 'local-nowhere', startBar: 4, duration: 4 }]
    })
    expect(song.warnings).toMatchObject([{ code: 'unknown_loop', details: [{ blockId: 'b2', loopId: 'local-nowhere' }] }])
    const full = await owner.api.songs.get(song.id, { include: 'loops' })
    expect(full.loops?.map((l) => l.id)).toEqual([loop.id])
    expect(full.missingLoopIds).toEqual(['local-nowhere'])
    const updated = await owner.api.songs.update(song.id, { timeline: [{ id: 'b1', loopId: loop.id, startBar: 0, duration: 8 }], isPublic: true })
    expect(updated.totalBars).toBe(8)
    expect(updated.warnings).toEqual([])
    expect((await owner.api.songs.list({ limit: 100 })).songs.some((s) => s.id === song.id)).toBe(true)
    expect((await owner.api.songs.presence(song.id)).members).toEqual([])
    expect((await friend.api.songs.fork(song.id)).forkedFrom).toBe(song.id)
    const link = await owner.api.songs.share(song.id)
    expect((await owner.api.songs.shares(song.id)).shares.map((s) => s.shareToken)).toContain(link.shareToken)
    expect(await client().api.pages.song(link.shareToken)).toContain('<html')
    await owner.api.songs.addCollaborator(song.id, { username: friendName, role: 'viewer' })
    await owner.api.songs.updateCollaborator(song.id, friendName, { role: 'editor' })
    expect((await owner.api.songs.collaborators(song.id)).collaborators).toHaveLength(1)
    await owner.api.songs.removeCollaborator(song.id, friendName)
    const comment = await owner.api.songs.comment(song.id, { body: 'chorus here' })
    expect((await friend.api.songs.comments(song.id)).comments[0]?.id).toBe(comment.id)
    expect(await owner.api.songs.delete(song.id)).toEqual({ success: true })
  })
})

describe('samples, explore, migration, reports', () => {
  it('uploads, lists, fetches and deletes a sample', async () => {
    const sample = await owner.api.samples.upload(wav(), 'hit.wav', 'Hit')
    expect(sample.mimeType).toBe('audio/wav')
    expect((await owner.api.samples.list()).samples.map((s) => s.id)).toContain(sample.id)
    expect((await owner.api.samples.get(sample.id)).name).toBe('Hit')
    const file = await owner.api.samples.file(new URL(sample.fileUrl).pathname.split('/').pop()!)
    expect(file.size).toBe(wav().size)
    expect(await owner.api.samples.delete(sample.id)).toEqual({ success: true })
  })

  it('explores public loops', async () => {
    const loop = await owner.api.loops.create({ name: `Explorable ${unique()}`, length: 1, isPublic: true })
    const found = await client().api.explore({ type: 'loop', q: loop.name })
    expect(JSON.stringify(found)).toContain(loop.id)
  })

  it('migrates and reports', async () => {
    const user = client()
    const result = await user.api.migrate({ loops: { 'local-a': { name: 'A', bars: 2, isPublic: true } }, songs: [] })
    expect(result.loops.created).toBe(1)
    const loopId = result.idMapping.loops['local-a']!
    const report = await friend.api.reports.create({ resourceType: 'loop', resourceId: loopId, reason: 'spam' })
    expect(report.status).toBe('open')
  })
})

describe('moderation', () => {
  it('an admin reviews reports and hides and unhides content', async () => {
    const admin = client()
    const me = await admin.api.users.me()
    await control('admin-grant', { userId: me.id })
    expect((await admin.api.users.me()).isAdmin).toBe(true)
    const loop = await owner.api.loops.create({ name: 'Reported', length: 1, isPublic: true })
    const song = await owner.api.songs.create({ name: 'Reported song', isPublic: true })
    const comment = await friend.api.loops.comment(loop.id, { body: 'rude' })
    const report = await friend.api.reports.create({ resourceType: 'loop', resourceId: loop.id, reason: 'bad' })
    const open = await admin.api.admin.reports({ status: 'open' })
    expect(open.reports.map((r) => r.id)).toContain(report.id)
    await admin.api.admin.resolveReport(report.id, { action: 'dismiss' })
    await admin.api.admin.hideLoop(loop.id, { reason: 'spam' })
    await expect(friend.api.loops.get(loop.id)).rejects.toMatchObject({ status: 404 })
    await admin.api.admin.unhideLoop(loop.id)
    await admin.api.admin.hideSong(song.id, { reason: 'spam' })
    await admin.api.admin.unhideSong(song.id)
    await admin.api.admin.hideComment(comment.id, { reason: 'abuse' })
    await admin.api.admin.unhideComment(comment.id)
    const friendId = (await friend.api.users.me()).id
    await admin.api.admin.hideUser(friendId, { reason: 'spam' })
    await admin.api.admin.unhideUser(friendId)
    expect((await friend.api.loops.get(loop.id)).name).toBe('Reported')
  })
})

describe('system and errors', () => {
  it('health, readiness, metrics', async () => {
    const bare = client()
    expect(await bare.api.system.health()).toEqual({ status: 'ok' })
    expect((await bare.api.system.ready()).status).toBe('ok')
    expect(String(await bare.api.system.metrics())).toContain('# HELP')
  })

  it('one typed error: status, code, error, details', async () => {
    const err = await owner.api.loops.create({ name: '', length: 3 as 4 }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ApiError)
    const apiError = err as ApiError
    expect(apiError.status).toBe(400)
    expect(apiError.code).toBe('validation_error')
    expect(apiError.error).toMatch(/invalid request body/)
    expect(apiError.details.length).toBeGreaterThan(0)
    expect(apiError.retryAfter).toBeNull()
    const offline = newClient({ baseUrl: 'http://127.0.0.1:9' })
    await expect(offline.api.system.health()).rejects.toMatchObject({ status: 0, code: 'network_error' })
  })

  it('reaches every operation of the spec', async () => {
    // The link test (session.test.ts) covers post_link_auth against a Firebase-enabled server.
    const expected = Object.keys(OPERATIONS).filter((id) => id !== 'post_link_auth') as OperationId[]
    expect(expected.filter((id) => !hit.has(id))).toEqual([])
    expect(SERVER).not.toBe('')
  })
})

afterAll(() => undefined)
