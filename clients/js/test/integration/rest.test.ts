/**
 * Every REST operation through the kit, against a real server; a fetch wrapper records which
 * operation each request hit, and the last test checks that none was left out.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { ApiError, OPERATIONS, type MusicPlaygroundClient, type OperationId } from '../../src/index.js'
import * as Y from 'yjs'

import { SERVER, control, needServer, newClient, waitFor, wav } from '../helpers.js'

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

describe('history, notifications, the binary document API, pages', () => {
  it('versions, time travel, compare, restore, undo, fork from a version, settings, activity', async () => {
    const loop = await owner.api.loops.create({ name: 'History', length: 4, bpm: 100 })
    const path = { id: loop.id }
    const first = await owner.api.call('post_create_version_loop_history', { path, body: { name: 'first cut' } })
    await owner.api.loops.update(loop.id, { bpm: 140 })
    expect((await owner.api.call('get_list_versions_loop_history', { path })).versions.map((v) => v.id)).toContain(first.id)
    expect((await owner.api.call('get_read_version_loop_history', { path: { ...path, versionId: first.id } })).content.bpm).toBe(100)
    const now = await owner.api.call('get_at_loop_history', { path, query: { t: new Date().toISOString() } })
    expect(now.content.bpm).toBe(140)
    const compared = await owner.api.call('get_compare_loop_history', { path, query: { from: first.id } })
    expect(compared.summary).toEqual({ fieldsChanged: 1 })
    const activity = await owner.api.call('get_activity_loop_history', { path })
    expect(activity.activity.length).toBeGreaterThan(0)
    const restored = await owner.api.call('post_restore_loop_history', { path: { ...path, versionId: first.id } })
    expect(restored.content.bpm).toBe(100)
    const me = await owner.api.users.me()
    const undone = await owner.api.call('post_revert_loop_history', { path, body: { userId: me.id, since: loop.createdAt } })
    expect(undone.content).toBeDefined()
    const fork = await owner.api.call('post_fork_version_loop_history', { path: { ...path, versionId: first.id } })
    expect(fork.forkedFrom).toBe(loop.id)
    expect((await owner.api.call('get_settings_loop_history', { path })).viewersMayRead).toBe(false)
    expect((await owner.api.call('patch_update_settings_loop_history', { path, body: { viewersMayRead: true } })).viewersMayRead).toBe(true)
    await owner.api.call('delete_delete_version_loop_history', { path: { ...path, versionId: first.id } })
    await expect(owner.api.call('get_read_version_loop_history', { path: { ...path, versionId: first.id } })).rejects.toMatchObject({ status: 404 })

    const song = await owner.api.songs.create({ name: 'History song' })
    const spath = { id: song.id }
    const named = await owner.api.call('post_create_version_song_history', { path: spath, body: { name: 'v1' } })
    await owner.api.songs.update(song.id, { bpm: 90 })
    expect((await owner.api.call('get_list_versions_song_history', { path: spath })).versions).toHaveLength(1)
    expect((await owner.api.call('get_read_version_song_history', { path: { ...spath, versionId: named.id } })).content.bpm).toBe(120)
    expect((await owner.api.call('get_at_song_history', { path: spath, query: { t: new Date().toISOString() } })).content.bpm).toBe(90)
    expect((await owner.api.call('get_compare_song_history', { path: spath, query: { from: named.id } })).summary).toEqual({ fieldsChanged: 1 })
    expect((await owner.api.call('get_activity_song_history', { path: spath })).activity.length).toBeGreaterThan(0)
    expect((await owner.api.call('post_restore_song_history', { path: { ...spath, versionId: named.id } })).content.bpm).toBe(120)
    expect((await owner.api.call('post_revert_song_history', { path: spath, body: { userId: me.id, since: song.createdAt } })).content).toBeDefined()
    expect((await owner.api.call('post_fork_version_song_history', { path: { ...spath, versionId: named.id } })).forkedFrom).toBe(song.id)
    expect((await owner.api.call('get_settings_song_history', { path: spath })).viewersMayRead).toBe(false)
    expect((await owner.api.call('patch_update_settings_song_history', { path: spath, body: { viewersMayRead: true } })).viewersMayRead).toBe(true)
    await owner.api.call('delete_delete_version_song_history', { path: { ...spath, versionId: named.id } })
  })

  it('notifications: a comment reaches the owner, marked read, kinds turned off', async () => {
    const reader = client()
    const loop = await reader.api.loops.create({ name: 'Notify me', length: 1, isPublic: true })
    await friend.api.loops.comment(loop.id, { body: 'nice groove' })
    const listed = await waitFor(async () => {
      const page = await reader.api.call('get_list_notifications_notifications', {})
      return page.notifications.length > 0 ? page : null
    }, 15_000, 'a notification') as NonNullable<Awaited<ReturnType<typeof reader.api.call<'get_list_notifications_notifications'>>>>
    expect(listed.notifications[0]?.kind).toBe('loop.comment_created')
    expect(listed.unreadCount).toBe(1)
    const entry = listed.notifications[0]!
    await reader.api.call('post_mark_read_notifications', { path: { id: entry.id } })
    expect((await reader.api.call('get_list_notifications_notifications', {})).unreadCount).toBe(0)
    expect((await reader.api.call('post_mark_all_read_notifications', {})).marked).toBe(0)
    const kinds = await reader.api.call('get_get_settings_notifications', {})
    expect(kinds.kinds['loop.comment_created']).toBe(true)
    const off = await reader.api.call('patch_update_settings_notifications', { body: { kinds: { 'loop.comment_created': false } } })
    expect(off.kinds['loop.comment_created']).toBe(false)
    const admin = client()
    await control('admin-grant', { userId: (await admin.api.users.me()).id })
    await expect(admin.api.call('get_webhook_deliveries_moderation', { path: { id: crypto.randomUUID() } })).rejects.toMatchObject({ status: 404 })
  })

  it('the binary document API: a Yjs update read and written back', async () => {
    const loop = await owner.api.loops.create({ name: 'Binary', length: 2 })
    const state = await owner.api.call('get_get_yjs_loops', { path: { id: loop.id } }) as unknown as Blob
    const doc = new Y.Doc()
    Y.applyUpdate(doc, new Uint8Array(await state.arrayBuffer()))
    const before = Y.encodeStateVector(doc)
    doc.getMap('meta').set('name', 'Written as Yjs')
    await owner.api.call('post_post_yjs_loops', { path: { id: loop.id }, body: Y.encodeStateAsUpdate(doc, before) })
    expect((await owner.api.loops.get(loop.id)).name).toBe('Written as Yjs')
    const song = await owner.api.songs.create({ name: 'Binary song' })
    const songState = await owner.api.call('get_get_yjs_songs', { path: { id: song.id } }) as unknown as Blob
    const songDoc = new Y.Doc()
    Y.applyUpdate(songDoc, new Uint8Array(await songState.arrayBuffer()))
    const songBefore = Y.encodeStateVector(songDoc)
    songDoc.getMap('meta').set('bpm', 96)
    await owner.api.call('post_post_yjs_songs', { path: { id: song.id }, body: Y.encodeStateAsUpdate(songDoc, songBefore) })
    expect((await owner.api.songs.get(song.id)).bpm).toBe(96)
  })

  it('the preview image of a shared loop and the static files of its page', async () => {
    const loop = await owner.api.loops.create({ name: 'Preview', length: 1 })
    const link = await owner.api.loops.share(loop.id)
    const guest = client()
    const png = await guest.api.call('get_preview_image_pages', { path: { token: link.shareToken } }) as unknown as Blob
    expect(png.type).toBe('image/png')
    const html = await guest.api.pages.loop(link.shareToken)
    const asset = /\/static\/([^/"]+)\/([^/"]+)\/([^/"?]+\.js)/.exec(html)
    expect(asset).not.toBeNull()
    const [, group, digest, file] = asset!
    const script = await guest.api.call('get_static_file_pages', { path: { group: group!, digest: digest!, file: file! } })
    expect(String(script).length + ((script as Blob).size ?? 0)).toBeGreaterThan(0)
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
