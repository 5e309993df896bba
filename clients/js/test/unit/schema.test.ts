import { describe, expect, it } from 'vitest'
import * as Y from 'yjs'

import { BOUNDS, readLoop, readSong, stepKey } from '../../src/schema.js'

describe('stepKey', () => {
  it('is JSON.stringify([step, row, soundId, pitch ?? note]) as the server writes it', () => {
    expect(stepKey({ step: 0, soundId: 'drum-kick' })).toBe('[0,null,"drum-kick",null]')
    expect(stepKey({ step: 4, row: 2, soundId: 'synth-lead', pitch: 60 })).toBe('[4,2,"synth-lead",60]')
    expect(stepKey({ step: 8, soundId: 'synth-lead', note: 'A4' })).toBe('[8,null,"synth-lead","A4"]')
    expect(stepKey({ step: 8, soundId: 'synth-lead', note: 'A4', pitch: 69 })).toBe('[8,null,"synth-lead",69]')
  })
})

describe('readLoop', () => {
  it('reads the schema, fills defaults, skips junk and collapses duplicate cells', () => {
    const doc = new Y.Doc()
    doc.transact(() => {
      const meta = doc.getMap('meta')
      meta.set('name', 'Groove')
      meta.set('length', 2)
      meta.set('bpm', 'fast') // junk: reads as null
      const chords = doc.getMap('chords')
      chords.set('4', { chord: 'G' })
      chords.set('0', { chord: 'C', roman: 'I', extra: true })
      chords.set('x', { chord: 'D' }) // bad key: skipped
      const steps = doc.getMap('steps')
      steps.set(stepKey({ step: 4, soundId: 'kick' }), new Y.Map(Object.entries({ step: 4, soundId: 'kick', velocity: 0.5 })))
      steps.set('zzz', new Y.Map(Object.entries({ step: 4, soundId: 'kick', velocity: 0.9 }))) // same cell, odd key: loses
      steps.set(stepKey({ step: 0, soundId: 'kick' }), new Y.Map(Object.entries({ step: 0, soundId: 'kick' }))) // velocity defaults
      steps.set('bad', new Y.Map(Object.entries({ step: 99, soundId: 'kick' }))) // out of range: skipped
    })
    expect(readLoop(doc)).toEqual({
      name: 'Groove',
      length: 2,
      bpm: null,
      color: BOUNDS.DEFAULT_LOOP_COLOR,
      schemaVersion: null,
      chordProgression: [{ bar: 0, chord: 'C', roman: 'I' }, { bar: 4, chord: 'G' }],
      iconSequence: [{ step: 0, soundId: 'kick', velocity: 0.8 }, { step: 4, soundId: 'kick', velocity: 0.5 }]
    })
  })

  it('two replicas toggling the same cell on at once converge on one step', () => {
    const a = new Y.Doc()
    const b = new Y.Doc()
    const key = stepKey({ step: 3, soundId: 'snare' })
    a.getMap('steps').set(key, new Y.Map(Object.entries({ step: 3, soundId: 'snare', velocity: 0.8 })))
    b.getMap('steps').set(key, new Y.Map(Object.entries({ step: 3, soundId: 'snare', velocity: 0.8 })))
    Y.applyUpdate(a, Y.encodeStateAsUpdate(b))
    Y.applyUpdate(b, Y.encodeStateAsUpdate(a))
    expect(readLoop(a).iconSequence).toEqual([{ step: 3, soundId: 'snare', velocity: 0.8 }])
    expect(readLoop(b)).toEqual(readLoop(a))
  })
})

describe('readSong', () => {
  it('sorts blocks by start and computes totalBars', () => {
    const doc = new Y.Doc()
    const timeline = doc.getMap('timeline')
    timeline.set('b2', new Y.Map(Object.entries({ loopId: 'l1', startBar: 4, duration: 8 })))
    timeline.set('b1', new Y.Map(Object.entries({ loopId: 'l2', startBar: 0, duration: 4, color: '#7B61FF' })))
    timeline.set('junk', 5)
    expect(readSong(doc)).toEqual({
      name: 'Untitled',
      bpm: 120,
      timeSignature: '4/4',
      schemaVersion: null,
      timeline: [
        { id: 'b1', loopId: 'l2', startBar: 0, duration: 4, color: '#7B61FF' },
        { id: 'b2', loopId: 'l1', startBar: 4, duration: 8 }
      ],
      totalBars: 12
    })
  })
})
