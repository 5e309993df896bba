/**
 * Live documents between kit clients on a real server: editing, one step per cell, a viewer
 * that cannot write, presence, live role changes, comments, revocation and deletion.
 */

import { beforeAll, describe, expect, it } from 'vitest'
import * as Y from 'yjs'

import {
  LiveDocumentClosed, ReadOnlyError, stepKey,
  type ChangeEvent, type LiveLoop, type LoopContent, type MusicPlaygroundClient, type ServerError
} from '../../src/index.js'
import { needServer, newClient, sleep, waitFor } from '../helpers.js'

const unique = (): string => Math.random().toString(36).slice(2, 10)

interface Pair { owner: MusicPlaygroundClient, editor: MusicPlaygroundClient, loopId: string, a: LiveLoop, b: LiveLoop }

/** An owner and an editor (a collaborator), both with the loop open and synced. */
async function pair (): Promise<Pair> {
  const owner = newClient()
  const editor = newClient()
  const username = `ed_${unique()}`
  await editor.api.users.updateMe({ username })
  const loop = await owner.api.loops.create({ name: 'Live', length: 4, iconSequence: [{ step: 0, soundId: 'drum-kick' }] })
  await owner.api.loops.addCollaborator(loop.id, { username, role: 'editor' })
  const a = owner.openLoop(loop.id)
  const b = editor.openLoop(loop.id)
  await Promise.all([a.whenSynced(), b.whenSynced()])
  return { owner, editor, loopId: loop.id, a, b }
}

function restContent (loop: Record<string, unknown>): LoopContent {
  const { name, length, bpm, color, schemaVersion, chordProgression, iconSequence } = loop
  return { name, length, bpm, color, schemaVersion, chordProgression, iconSequence } as LoopContent
}

beforeAll(() => needServer())

describe('live editing between two kit clients', () => {
  it('edits arrive on the other side with change events, and REST reads the same content', async () => {
    const { owner, a, b, loopId } = await pair()
    expect(a.role).toBe('owner')
    expect(b.role).toBe('editor')
    expect(b.content.iconSequence).toEqual([{ step: 0, soundId: 'drum-kick', velocity: 0.8 }])
    const seenByB: Array<ChangeEvent<LoopContent>> = []
    const seenByA: Array<ChangeEvent<LoopContent>> = []
    b.on('change', (e) => seenByB.push(e))
    a.on('change', (e) => seenByA.push(e))

    expect(a.toggleStep({ step: 4, row: 1, soundId: 'synth-lead', pitch: 64 })).toBe(true)
    a.setBpm(128)
    b.setChord(2, { chord: 'Dm', roman: 'ii' })
    b.setName('Together')
    await waitFor(() => a.content.name === 'Together' && b.content.bpm === 128 && b.content.iconSequence.length === 2, 15_000, 'convergence')
    expect(a.content).toEqual(b.content)
    expect(seenByA.some((e) => e.origin === 'local' && e.fields.includes('iconSequence'))).toBe(true)
    const remoteStep = seenByB.find((e) => e.origin === 'remote' && e.fields.includes('iconSequence'))!
    expect(remoteStep.keys.steps).toEqual([stepKey({ step: 4, row: 1, soundId: 'synth-lead', pitch: 64 })])
    expect(seenByA.some((e) => e.origin === 'remote' && e.fields.includes('chordProgression'))).toBe(true)

    await Promise.all([a.whenSynced(), b.whenSynced()])
    expect(a.hasUnsyncedChanges).toBe(false)
    expect(restContent(await owner.api.loops.get(loopId) as unknown as Record<string, unknown>)).toEqual(a.content)
    a.close()
    b.close()
  })

  it('two people toggling the same cell at once make one step', async () => {
    const { owner, a, b, loopId } = await pair()
    const cell = { step: 7, row: 2, soundId: 'drum-snare' }
    a.toggleStep(cell)
    b.toggleStep(cell) // neither has seen the other's yet
    await Promise.all([a.whenSynced(), b.whenSynced()])
    // Equal content is not enough (both cells read alike): wait until each has the other's toggle.
    const vector = (doc: Y.Doc): string => Y.encodeStateVector(doc).join(',')
    await waitFor(() => vector(a.doc) === vector(b.doc), 15_000, 'both toggles on both sides')
    expect(a.content.iconSequence).toHaveLength(2)
    expect(b.content).toEqual(a.content)
    expect(a.doc.getMap('steps').size).toBe(2) // one key per cell: the kick and this one
    // Then concurrent edits of different attributes of that step both survive.
    a.updateStep(cell, { velocity: 0.3 })
    b.updateStep(cell, { duration16: 2 })
    await Promise.all([a.whenSynced(), b.whenSynced()])
    await waitFor(async () => (await owner.api.loops.get(loopId)).iconSequence.some((s) => s.duration16 === 2 && s.velocity === 0.3), 15_000, 'REST')
    const steps = (await owner.api.loops.get(loopId)).iconSequence
    expect(steps.filter((s) => s.step === 7)).toEqual([{ step: 7, row: 2, soundId: 'drum-snare', velocity: 0.3, duration16: 2 }])
    await waitFor(() => JSON.stringify(a.content) === JSON.stringify(b.content), 15_000, 'convergence')
    a.moveStep(cell, { step: 8 })
    await waitFor(() => b.content.iconSequence.some((s) => s.step === 8), 5000, 'move')
    expect(b.content.iconSequence.filter((s) => s.soundId === 'drum-snare')).toEqual([{ step: 8, row: 2, soundId: 'drum-snare', velocity: 0.3, duration16: 2 }])
    a.close()
    b.close()
  })

  it('presence: members from the server, cursors and names from awareness', async () => {
    const { a, b } = await pair()
    a.setUser({ name: 'Ann', color: '#FF8800' })
    a.setCursor({ bar: 1, step: 4, row: 2 })
    await waitFor(() => b.peers.some((p) => p.cursor?.step === 4), 5000, 'cursor')
    expect(b.peers.find((p) => p.cursor?.step === 4)?.user?.name).toBe('Ann')
    await waitFor(() => b.members.length === 2, 5000, 'members')
    expect(b.members.map((m) => m.role).sort()).toEqual(['editor', 'owner'])
    expect(() => a.setCursor({ bar: 1, step: 64, row: 0 })).toThrow(/cursor.step/)
    a.close()
    await waitFor(() => b.peers.every((p) => p.cursor?.step !== 4) && b.members.length === 1, 5000, 'leave')
    b.close()
  })

  it('comments arrive as typed events', async () => {
    const { owner, a, b, loopId } = await pair()
    const events: string[] = []
    b.on('comment', ({ action, comment }) => events.push(`${action}:${comment.body}`))
    const comment = await owner.api.loops.comment(loopId, { body: 'nice groove', anchor: { bar: 1, step: 4 } })
    await owner.api.comments.edit(comment.id, { body: 'great groove' })
    await waitFor(() => events.length === 2, 5000, 'comments')
    expect(events).toEqual(['created:nice groove', 'edited:great groove'])
    a.close()
    b.close()
  })
})

describe('read-only and losing access', () => {
  it('a share-link viewer cannot write, and nothing it does reaches the server or the owner', async () => {
    const owner = newClient()
    const loop = await owner.api.loops.create({ name: 'Mine', length: 2, bpm: 128 })
    const link = await owner.api.loops.share(loop.id)
    const a = owner.openLoop(loop.id)
    const viewerClient = newClient()
    const v = viewerClient.openLoop(loop.id, { shareToken: link.shareToken })
    const refusals: ServerError[] = []
    v.on('error', (e) => refusals.push(e))
    await Promise.all([a.whenSynced(), v.whenSynced()])
    expect(viewerClient.session.user).toBeNull() // no account was made for viewing
    expect(v.role).toBe('viewer')
    expect(v.readOnly).toBe(true)
    const attempt = (() => { try { v.setBpm(222); return null } catch (e) { return e } })()
    expect(attempt).toBeInstanceOf(ReadOnlyError)
    expect((attempt as ReadOnlyError).code).toBe('read_only')
    expect(() => v.toggleStep({ step: 1, soundId: 'drum-kick' })).toThrow(ReadOnlyError)
    expect(() => v.transact(() => undefined)).toThrow(ReadOnlyError)
    // Even a raw edit of the Y.Doc stays in this replica: never sent.
    v.doc.getMap('meta').set('bpm', 222)
    a.setName('Still mine')
    await waitFor(() => v.content.name === 'Still mine', 5000, 'live update to the viewer')
    await sleep(500)
    expect(a.content.bpm).toBe(128)
    expect((await owner.api.loops.get(loop.id)).bpm).toBe(128)
    expect(refusals).toEqual([]) // the server never had to refuse anything: nothing was sent
    // Reconnecting does not leak it either (a viewer answers the handshake with nothing).
    a.close()
    const again = owner.openLoop(loop.id)
    await again.whenSynced()
    expect(again.content.bpm).toBe(128)
    again.close()
    v.close()
  })

  it('a downgrade arrives live and makes the document read-only', async () => {
    const { owner, a, b, loopId } = await pair()
    const roles: string[] = []
    b.on('role-changed', ({ role }) => roles.push(role))
    const [collaborator] = (await owner.api.loops.collaborators(loopId)).collaborators
    await owner.api.loops.updateCollaborator(loopId, collaborator!.username!, { role: 'viewer' })
    await waitFor(() => b.readOnly, 5000, 'downgrade')
    expect(roles).toEqual(['viewer'])
    expect(() => b.setName('nope')).toThrow(ReadOnlyError)
    await owner.api.loops.updateCollaborator(loopId, collaborator!.username!, { role: 'editor' })
    await waitFor(() => !b.readOnly, 5000, 'upgrade')
    b.setName('Editor again')
    await waitFor(() => a.content.name === 'Editor again', 5000, 'edit after upgrade')
    a.close()
    b.close()
  })

  it('revoking the share link mid-session closes the viewer for good (no reconnect loop)', async () => {
    const owner = newClient()
    const loop = await owner.api.loops.create({ name: 'Revoked', length: 2 })
    const link = await owner.api.loops.share(loop.id)
    const v = newClient().openLoop(loop.id, { shareToken: link.shareToken })
    await v.whenSynced()
    const revoked: ServerError[] = []
    const statuses: string[] = []
    v.on('access_revoked', (e) => revoked.push(e))
    v.on('status', (s) => statuses.push(s))
    const closed = new Promise<LiveDocumentClosed>((resolve) => v.on('closed', resolve))
    await owner.api.shares.revoke(link.shareToken)
    const reason = await closed
    expect(reason.reason).toBe('access_revoked')
    expect(revoked).toHaveLength(1)
    expect(v.status).toBe('closed')
    await expect(v.whenSynced()).rejects.toBeInstanceOf(LiveDocumentClosed)
    await sleep(3000)
    expect(statuses).toEqual(['closed'])
    expect((await owner.api.loops.presence(loop.id)).members).toEqual([])
  })

  it('deleting the document closes everyone with document_deleted', async () => {
    const { owner, a, b, loopId } = await pair()
    const closed = new Promise<LiveDocumentClosed>((resolve) => b.on('closed', resolve))
    await owner.api.loops.delete(loopId)
    expect((await closed).reason).toBe('document_deleted')
    await waitFor(() => a.status === 'closed', 5000, 'owner closed')
  })

  it('an unknown document is refused for good', async () => {
    const v = newClient().openLoop('00000000-0000-4000-8000-000000000000')
    await expect(v.whenSynced()).rejects.toMatchObject({ reason: 'not_found' })
  })

  it('mutators wait for the role', async () => {
    const owner = newClient()
    const loop = await owner.api.loops.create({ name: 'Early', length: 2 })
    const a = owner.openLoop(loop.id)
    expect(() => a.setName('too soon')).toThrow(ReadOnlyError)
    await a.whenSynced()
    a.setName('now')
    a.close()
    expect(() => a.setName('closed')).toThrow(/closed/)
  })

  it('a song is live too: blocks by id, moved and recoloured concurrently', async () => {
    const owner = newClient()
    const loop = await owner.api.loops.create({ name: 'L', length: 4 })
    const song = await owner.api.songs.create({ name: 'Song', timeline: [{ id: 'b1', loopId: loop.id, startBar: 0, duration: 4 }] })
    const a = owner.openSong(song.id)
    const b = owner.openSong(song.id)
    await Promise.all([a.whenSynced(), b.whenSynced()])
    a.updateBlock('b1', { startBar: 8 })
    b.updateBlock('b1', { color: '#7B61FF' })
    a.setBlock({ id: 'b2', loopId: loop.id, startBar: 12, duration: 4 })
    await Promise.all([a.whenSynced(), b.whenSynced()])
    // Each has the other's edits (whenSynced says only that the server has one's own).
    const done = (song: typeof a): boolean =>
      song.content.timeline.length === 2 && song.content.timeline[0]?.color === '#7B61FF' && song.content.timeline[0]?.startBar === 8
    await waitFor(() => done(a) && done(b), 15_000, 'song')
    expect(a.content.totalBars).toBe(16)
    expect((await owner.api.songs.get(song.id)).timeline).toEqual(a.content.timeline)
    b.removeBlock('b2')
    await waitFor(() => a.content.timeline.length === 1, 5000, 'remove')
    a.close()
    b.close()
  })
})

describe('the Yjs document stays the kit user\'s', () => {
  it('openLoop syncs into a document given to it', async () => {
    const owner = newClient()
    const loop = await owner.api.loops.create({ name: 'Given', length: 1 })
    const doc = new Y.Doc()
    const a = owner.openLoop(loop.id, { doc })
    await a.whenSynced()
    expect(doc.getMap('meta').get('name')).toBe('Given')
    a.close()
  })
})
