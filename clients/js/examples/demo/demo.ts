/**
 * The kit in a page: a loop's step grid, live. Open it without parameters and it makes a loop
 * (an anonymous account is made on first use) and shows two links: the same loop for another
 * tab (you again: both tabs edit) and a share link (a guest who may only watch).
 *
 * ?server=<API origin>  (default http://localhost:3001)   ?loop=<id>   ?share=<share token>
 */

import { MemoryStorage, ReadOnlyError, createClient, type LiveLoop, type LoopContent } from '../../src/index.js'

const ROWS = ['drum-kick', 'drum-snare', 'hihat', 'synth-lead'] as const
const STEPS = 16

const params = new URLSearchParams(location.search)
const server = params.get('server') ?? 'http://localhost:3001'
const shareToken = params.get('share') ?? undefined
// A share link opens as a guest: no account, even if this browser has one (same tab storage).
const client = createClient({ baseUrl: server, ...(shareToken !== undefined ? { storage: new MemoryStorage() } : {}) })

const $ = (id: string): HTMLElement => document.getElementById(id)!

async function main (): Promise<void> {
  let loopId = params.get('loop')
  if (loopId === null) {
    const created = await client.api.loops.create({ name: 'Demo loop', length: 4, bpm: 120 })
    loopId = created.id
    params.set('loop', loopId)
    history.replaceState(null, '', `?${params.toString()}`)
  }
  const loop = client.openLoop(loopId, shareToken !== undefined ? { shareToken } : {})
  ;(window as unknown as { demo: unknown }).demo = { client, loop }
  buildGrid(loop)
  loop.on('change', ({ content }) => render(content))
  loop.on('status', () => showStatus(loop))
  loop.on('role-changed', () => showStatus(loop))
  loop.on('presence', (members) => {
    $('members').replaceChildren(...members.map((m) => {
      const li = document.createElement('li')
      li.textContent = `${m.displayName} (${m.role})`
      return li
    }))
  })
  loop.on('access_revoked', ({ message }) => { $('refusals').textContent = `access revoked: ${message}` })
  setInterval(() => { $('unsynced').textContent = loop.hasUnsyncedChanges ? 'unsaved changes…' : '' }, 200)
  await loop.whenSynced()
  render(loop.content)
  showStatus(loop)
  if (shareToken === undefined && !loop.readOnly) await showLinks(loop)
}

function buildGrid (loop: LiveLoop): void {
  const grid = $('grid')
  ROWS.forEach((soundId, row) => {
    const label = document.createElement('span')
    label.className = 'label'
    label.textContent = soundId
    grid.append(label)
    for (let step = 0; step < STEPS; step++) {
      const cell = document.createElement('button')
      cell.dataset.step = String(step)
      cell.dataset.row = String(row)
      cell.setAttribute('aria-pressed', 'false')
      cell.title = `${soundId}, step ${step + 1}`
      cell.addEventListener('click', () => {
        try {
          loop.toggleStep({ step, row, soundId })
          loop.setCursor({ bar: Math.floor(step / 4), step, row })
        } catch (err) {
          if (!(err instanceof ReadOnlyError)) throw err
          $('refusals').textContent = `refused: ${err.message}`
        }
      })
      grid.append(cell)
    }
  })
}

function render (content: LoopContent): void {
  $('name').textContent = content.name
  document.body.style.setProperty('--loop-color', content.color)
  const on = new Set(content.iconSequence.map((s) => `${s.row ?? -1}:${s.step}:${s.soundId}`))
  for (const cell of document.querySelectorAll<HTMLButtonElement>('#grid button')) {
    const row = Number(cell.dataset.row)
    const key = `${row}:${cell.dataset.step}:${ROWS[row]}`
    cell.setAttribute('aria-pressed', String(on.has(key)))
  }
}

function showStatus (loop: LiveLoop): void {
  $('status').textContent = loop.status
  $('status').dataset.status = loop.status
  $('role').textContent = loop.role ?? '…'
  $('grid').classList.toggle('read-only', loop.readOnly)
}

async function showLinks (loop: LiveLoop): Promise<void> {
  const link = await client.api.loops.share(loop.id)
  const here = new URL(location.href)
  const viewer = new URL(location.href)
  viewer.searchParams.set('share', link.shareToken)
  const a = document.createElement('a')
  a.id = 'editor-link'
  a.href = here.toString()
  a.target = '_blank'
  a.textContent = 'this loop in another tab (you, editing)'
  const b = document.createElement('a')
  b.id = 'viewer-link'
  b.href = viewer.toString()
  b.target = '_blank'
  b.textContent = 'share link (a guest, watching)'
  $('links').replaceChildren(a, b)
}

main().catch((err: unknown) => {
  $('refusals').textContent = `error: ${err instanceof Error ? err.message : String(err)}`
  throw err
})
