// The document commands both stock-client harnesses run (ysio-client.mjs, yws-client.mjs):
// edits of a loop or song document in the layout of music/schema.py, and its dump.

import * as Y from 'yjs'

/** The steps map key (music/schema.py step_key). */
export function stepKey (c) {
  return JSON.stringify([c.step, c.row ?? null, c.soundId, c.pitch ?? c.note ?? null])
}

function stepFields (c) {
  const fields = { step: c.step, soundId: c.soundId, velocity: c.velocity ?? 0.8 }
  for (const k of ['row', 'pitch', 'note', 'duration16']) {
    if (c[k] !== undefined && c[k] !== null) fields[k] = c[k]
  }
  return fields
}

export function dump (doc, kind) {
  if (kind === 'song') {
    return { meta: doc.getMap('meta').toJSON(), timeline: doc.getMap('timeline').toJSON() }
  }
  return {
    meta: doc.getMap('meta').toJSON(),
    chords: doc.getMap('chords').toJSON(),
    steps: doc.getMap('steps').toJSON()
  }
}

/** Run a document command; undefined if ``c.cmd`` is not one. */
export function runDocCommand (doc, c, ORIGIN) {
  switch (c.cmd) {
    case 'set-meta': {
      doc.transact(() => {
        const meta = doc.getMap('meta')
        if (c.value === null || c.value === undefined) meta.delete(c.key)
        else meta.set(c.key, c.value)
      }, ORIGIN)
      return {}
    }
    case 'toggle-step': {
      const key = stepKey(c)
      const steps = doc.getMap('steps')
      const on = c.on ?? !steps.has(key)
      doc.transact(() => {
        if (on) steps.set(key, new Y.Map(Object.entries(stepFields(c))))
        else steps.delete(key)
      }, ORIGIN)
      return { key, on }
    }
    case 'set-step-attr': {
      const key = stepKey(c)
      const step = doc.getMap('steps').get(key)
      if (!(step instanceof Y.Map)) throw new Error(`no step ${key}`)
      doc.transact(() => {
        if (c.value === null || c.value === undefined) step.delete(c.attr)
        else step.set(c.attr, c.value)
      }, ORIGIN)
      return { key }
    }
    case 'set-chord': {
      const key = String(c.bar)
      doc.transact(() => {
        const chords = doc.getMap('chords')
        if (c.chord === null || c.chord === undefined) {
          chords.delete(key)
        } else {
          const cell = { chord: c.chord }
          for (const k of ['roman', 'root', 'quality']) if (c[k] != null) cell[k] = c[k]
          chords.set(key, cell)
        }
      }, ORIGIN)
      return { key }
    }
    case 'set-block': {
      const fields = { loopId: c.loopId, startBar: c.startBar, duration: c.duration }
      if (c.color != null) fields.color = c.color
      doc.transact(() => {
        doc.getMap('timeline').set(String(c.id), new Y.Map(Object.entries(fields)))
      }, ORIGIN)
      return {}
    }
    case 'delete-block': {
      doc.transact(() => doc.getMap('timeline').delete(String(c.id)), ORIGIN)
      return {}
    }
    default:
      return undefined
  }
}
