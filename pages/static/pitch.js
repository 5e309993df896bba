// @ts-check
/**
 * Pitches: the note of a step and the notes of a chord symbol, read with tonal (the page
 * loads tonal's browser build, the global `Tonal`).
 *
 * - A step's `pitch` is a MIDI note number (60 is middle C, C4); without one, its `note`
 *   ("C4", "F#3", "Bb2") is read as a note name; without either the sound plays its own
 *   default note (see kit.js). Drum sounds ignore pitches: the composer writes General MIDI
 *   drum keys there (36 kick, 38 snare, 42 hi-hat), not notes.
 * - A chord's `chord` is a chord symbol as tonal reads it ("C", "Am", "C maj7", "G maj",
 *   "A min", "F#m7b5", "C/E"); when tonal cannot read it, `root` + `quality` are tried. A chord
 *   neither reading understands is silent (the chord name still shows on the page).
 * - The pad voices a chord from its root in octave 3 (C3 to B3) upwards, with a slash
 *   chord's bass note in octave 2 below it.
 */

/** @typedef {typeof import("tonal")} TonalLib */
/** @typedef {import("./time.js").IconStep} IconStep */
/** @typedef {import("./time.js").ChordCell} ChordCell */

export const PAD_OCTAVE = 3;
export const BASS_OCTAVE = 2;

/**
 * @param {TonalLib} tonal
 * @param {number} midi
 * @returns {number} the frequency in Hz of a MIDI note (A4 = 69 = 440 Hz)
 */
export function midiToFrequency(tonal, midi) {
  return tonal.Midi.midiToFreq(midi);
}

/**
 * @param {TonalLib} tonal
 * @param {IconStep} step
 * @returns {number | null} the step's MIDI note, or null when it names none
 */
export function stepMidi(tonal, step) {
  if (typeof step.pitch === "number" && step.pitch >= 0 && step.pitch <= 127) {
    return Math.round(step.pitch);
  }
  if (typeof step.note === "string") {
    return tonal.Note.midi(step.note) ?? null;
  }
  return null;
}

/**
 * @param {TonalLib} tonal
 * @param {ChordCell} cell
 * @returns {number[]} the MIDI notes the pad plays for a chord, lowest first ([] when unreadable)
 */
export function chordMidis(tonal, cell) {
  let chord = tonal.Chord.get(String(cell.chord ?? ""));
  if (chord.empty && cell.root) {
    chord = tonal.Chord.get(`${cell.root}${cell.quality ?? ""}`);
  }
  if (chord.empty || !chord.tonic) {
    return [];
  }
  const names = tonal.Chord.notes(chord.type, `${chord.tonic}${PAD_OCTAVE}`);
  if (chord.bass && chord.bass !== chord.tonic) {
    names.unshift(`${chord.bass}${BASS_OCTAVE}`);
  }
  return names.map((name) => tonal.Note.midi(name)).filter((midi) => midi !== null);
}
