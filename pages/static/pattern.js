// @ts-check
/**
 * What plays on which step: a loop's content compiled into the events of each step of one
 * cycle, and a song's timeline into its blocks' spans. Pure functions of the content (musical
 * time as time.js defines it); the player reads them step by step.
 */

import { chordMidis, stepMidi } from "./pitch.js";
import {
  blockSpan,
  chordSpans,
  loopSteps,
  songSteps,
  stepDuration,
  stepPosition,
  stepVelocity,
} from "./time.js";

/** @typedef {import("./pitch.js").TonalLib} TonalLib */
/** @typedef {import("./time.js").LoopContent} LoopContent */
/** @typedef {import("./time.js").SongContent} SongContent */
/** @typedef {import("./time.js").TimelineBlock} TimelineBlock */

/**
 * A sound to start on a step.
 * @typedef {object} NoteEvent
 * @property {string} soundId
 * @property {number | null} midi the step's note, or null for the sound's own
 * @property {number} steps how many steps it lasts
 * @property {number} velocity 0..1
 */

/**
 * A chord of the progression, played by the pad from its first step.
 * @typedef {object} ChordEvent
 * @property {string} name
 * @property {number[]} midis the pad's notes ([] for a chord symbol nobody could read)
 * @property {number} steps how many steps it lasts
 */

/**
 * One cycle of a loop, ready to play.
 * @typedef {object} LoopPattern
 * @property {number} steps the cycle's length in steps
 * @property {Map<number, NoteEvent[]>} notes the sounds starting on each step
 * @property {Map<number, ChordEvent>} chords the chord starting on each step
 * @property {Set<string>} sounds every sound id the loop uses
 */

/**
 * @param {TonalLib} tonal
 * @param {LoopContent} loop
 * @returns {LoopPattern}
 */
export function compileLoop(tonal, loop) {
  const steps = loopSteps(loop);
  /** @type {Map<number, NoteEvent[]>} */
  const notes = new Map();
  /** @type {Set<string>} */
  const sounds = new Set();
  for (const step of loop.iconSequence ?? []) {
    if (!step || typeof step !== "object") continue; // not a step: skipped, as the preview does
    const at = stepPosition(step);
    if (at < 0 || at >= steps || typeof step.soundId !== "string") continue;
    const event = {
      soundId: step.soundId,
      midi: stepMidi(tonal, step),
      steps: stepDuration(step),
      velocity: stepVelocity(step),
    };
    const here = notes.get(at);
    if (here) here.push(event);
    else notes.set(at, [event]);
    sounds.add(step.soundId);
  }
  /** @type {Map<number, ChordEvent>} */
  const chords = new Map();
  for (const span of chordSpans(loop)) {
    chords.set(span.start, {
      name: String(span.chord.chord ?? ""),
      midis: chordMidis(tonal, span.chord),
      steps: span.end - span.start,
    });
  }
  return { steps, notes, chords, sounds };
}

/**
 * A timeline block placed on the song's steps.
 * @typedef {object} Placement
 * @property {string} id the block's id
 * @property {string} loopId
 * @property {number} start the block's first step in the song
 * @property {number} end the step after its last
 */

/**
 * The song's blocks in the order they start (then by id), and the song's length in steps.
 * @param {SongContent} song
 * @returns {{steps: number, blocks: Placement[]}}
 */
export function arrangeSong(song) {
  const blocks = (song.timeline ?? [])
    .filter((block) => block && typeof block === "object")
    .map((block) => ({
    id: String(block.id),
    loopId: String(block.loopId),
    ...blockSpan(block),
  }));
  blocks.sort((a, b) => a.start - b.start || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return { steps: songSteps(song), blocks };
}
