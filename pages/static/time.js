// @ts-check
/**
 * Musical time of loops and songs, defined once for the player.
 *
 * A loop is in 4/4: a bar has 4 beats and a beat has 4 steps, so a bar has 16 steps.
 *
 * - Loop length: `length` bars (1, 2, 4 or 8; the composer writes `bars`). One cycle of the
 *   loop is `length × 16` steps.
 * - Step position: `step` (the composer writes `bar`, despite the name) counts sixteenth notes
 *   from the loop's start. Step 0 is the first sixteenth of bar 1, step 16 the first of bar 2.
 * - Step duration: `duration16` sixteenths (default 1).
 * - Chord position: a chord's `bar` counts beats (quarter notes) from the loop's start, despite
 *   its name. The seed's and the composer's 4-bar examples put one chord on each bar at
 *   0, 4, 8 and 12; the composer's 2-bar loop has chords at beats 0 and 2. A chord sounds from
 *   its beat until the next chord's beat; the last one sounds until the loop's end.
 * - Positions at or past the loop's end (a step ≥ length × 16, a chord beat ≥ length × 4)
 *   are outside the loop and are not played.
 * - Tempo: `bpm` beats per minute (default 120), so a step lasts 60 / bpm / 4 seconds.
 * - A song's timeline block starts at bar `startBar` and lasts `duration` bars (the composer
 *   writes `bars`), 16 steps each, whatever the song's `timeSignature` (the loops' grid is
 *   4/4). A block plays its loop from the loop's start, repeats it, and cuts it at the block's
 *   end. Blocks that overlap play together; a bar with no block is silent. The song plays at
 *   the song's `bpm`; its loops' own tempos are ignored. The song's length is the end of its
 *   last block.
 */

export const STEPS_PER_BEAT = 4;
export const BEATS_PER_BAR = 4;
export const STEPS_PER_BAR = STEPS_PER_BEAT * BEATS_PER_BAR;
export const DEFAULT_BPM = 120;
export const DEFAULT_VELOCITY = 0.8;
export const DEFAULT_DURATION16 = 1;

/**
 * One step of a loop's step sequencer, in the seed's shape or the composer's.
 * @typedef {object} IconStep
 * @property {number} [step] the position in sixteenths (seed)
 * @property {number} [bar] the position in sixteenths (composer)
 * @property {string} soundId
 * @property {number} [velocity] 0..1
 * @property {number | null} [pitch] a MIDI note number
 * @property {string | null} [note] a note name such as "C4"
 * @property {number | null} [row]
 * @property {number | null} [duration16]
 */

/**
 * One chord of a loop's chord progression.
 * @typedef {object} ChordCell
 * @property {number} bar the position in beats (see above)
 * @property {string} chord a chord symbol such as "C maj7" or "Am"
 * @property {string} [roman]
 * @property {string} [root]
 * @property {string} [quality]
 */

/**
 * A loop's content, in the seed's shape or the composer's.
 * @typedef {object} LoopContent
 * @property {string} [name]
 * @property {number} [length] bars (seed)
 * @property {number} [bars] bars (composer)
 * @property {number | null} [bpm]
 * @property {ChordCell[]} [chordProgression]
 * @property {IconStep[]} [iconSequence]
 */

/**
 * One block of a song's timeline.
 * @typedef {object} TimelineBlock
 * @property {string} id
 * @property {string} loopId
 * @property {number} startBar
 * @property {number} [duration] bars (seed)
 * @property {number} [bars] bars (composer)
 * @property {string | null} [color]
 */

/**
 * A song's content.
 * @typedef {object} SongContent
 * @property {string} [name]
 * @property {number | null} [bpm]
 * @property {string} [timeSignature]
 * @property {TimelineBlock[]} [timeline]
 */

/**
 * @param {unknown} value
 * @param {number} fallback
 * @returns {number} `value` as a whole number, or `fallback` when it is not a finite number
 */
function whole(value, fallback) {
  return typeof value === "number" && Number.isFinite(value) ? Math.floor(value) : fallback;
}

/**
 * @param {LoopContent} loop
 * @returns {number} the loop's length in bars (at least 1)
 */
export function loopBars(loop) {
  return Math.max(1, whole(loop.length ?? loop.bars, 1));
}

/**
 * @param {LoopContent} loop
 * @returns {number} the number of steps in one cycle of the loop
 */
export function loopSteps(loop) {
  return loopBars(loop) * STEPS_PER_BAR;
}

/**
 * @param {IconStep} step
 * @returns {number} the step's position in sixteenths from the loop's start (-1 when it has none)
 */
export function stepPosition(step) {
  return whole(step.step ?? step.bar, -1);
}

/**
 * @param {IconStep} step
 * @returns {number} how many steps the step's sound lasts
 */
export function stepDuration(step) {
  return Math.max(1, whole(step.duration16, DEFAULT_DURATION16));
}

/**
 * @param {IconStep} step
 * @returns {number} the step's velocity, 0..1
 */
export function stepVelocity(step) {
  const velocity = typeof step.velocity === "number" ? step.velocity : DEFAULT_VELOCITY;
  return Math.min(1, Math.max(0, velocity));
}

/**
 * @param {ChordCell} chord
 * @returns {number} the step where the chord starts
 */
export function chordStartStep(chord) {
  return whole(chord.bar, -1) * STEPS_PER_BEAT;
}

/**
 * A chord of the progression with the steps it sounds for.
 * @typedef {object} ChordSpan
 * @property {ChordCell} chord
 * @property {number} start the first step
 * @property {number} end the step after the last one
 */

/**
 * The chords that sound in one cycle of a loop, in order, each until the next or the loop's end.
 * Chords outside the loop are left out; of two chords on the same beat the later one wins.
 * @param {LoopContent} loop
 * @returns {ChordSpan[]}
 */
export function chordSpans(loop) {
  const cycle = loopSteps(loop);
  /** @type {Map<number, ChordCell>} */
  const byStart = new Map();
  for (const chord of loop.chordProgression ?? []) {
    if (!chord || typeof chord !== "object") continue;
    const start = chordStartStep(chord);
    if (start >= 0 && start < cycle) byStart.set(start, chord);
  }
  const starts = [...byStart.keys()].sort((a, b) => a - b);
  return starts.map((start, i) => ({
    chord: /** @type {ChordCell} */ (byStart.get(start)),
    start,
    end: i + 1 < starts.length ? starts[i + 1] : cycle,
  }));
}

/**
 * @param {number | null | undefined} bpm
 * @returns {number} the tempo to play at
 */
export function tempo(bpm) {
  return typeof bpm === "number" && Number.isFinite(bpm) && bpm > 0 ? bpm : DEFAULT_BPM;
}

/**
 * @param {number} bpm
 * @returns {number} the length of one step in seconds
 */
export function stepSeconds(bpm) {
  return 60 / tempo(bpm) / STEPS_PER_BEAT;
}

/**
 * @param {number} bpm
 * @returns {number} steps per second, the rate of the player's clock
 */
export function stepsPerSecond(bpm) {
  return 1 / stepSeconds(bpm);
}

/**
 * @param {TimelineBlock} block
 * @returns {{start: number, end: number}} the block's first step and the step after its last
 */
export function blockSpan(block) {
  const start = Math.max(0, whole(block.startBar, 0)) * STEPS_PER_BAR;
  const bars = Math.max(1, whole(block.duration ?? block.bars, 1));
  return { start, end: start + bars * STEPS_PER_BAR };
}

/**
 * @param {SongContent} song
 * @returns {number} the number of steps in the song: the end of its last block
 */
export function songSteps(song) {
  return (song.timeline ?? []).reduce(
    (end, block) => (block && typeof block === "object" ? Math.max(end, blockSpan(block).end) : end),
    0,
  );
}
