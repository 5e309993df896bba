// @ts-check
/**
 * The player of the public pages and embeds: plays a loop or a song with Tone.js.
 *
 * ```js
 * import { createPlayer } from "/static/player.js";
 * const player = createPlayer({
 *   Tone, Tonal,                        // the libraries (globals of their browser builds)
 *   kind: "loop",                       // or "song"
 *   content,                            // the loop's or song's content (the API's JSON)
 *   loops: { [loopId]: loopContent },   // a song's loops
 *   samples: { [sampleId]: fileUrl },   // where the `sample:<id>` sounds' files are
 *   onStep: (position) => {},           // the playhead, once per step, in time with the sound
 * });
 * button.onclick = async () => player.playing ? player.stop() : await player.start();
 * // a live edit: heard from the next loop cycle (a song: from the next bar line)
 * player.update(newContent, { loops, samples });
 * ```
 *
 * Time runs as time.js defines it. A step clock (a Tone.Clock ticking once per sixteenth)
 * drives the schedule: each tick, a little ahead of time (the context's look-ahead), starts
 * the sounds of that step at the step's exact audio time, and hands the playhead to
 * Tone's Draw, which calls `onStep` on the animation frame nearest that time.
 *
 * A loop repeats its cycle of `length × 16` steps. A song plays from bar 1 to the end of its
 * last block, each block playing its loop, and starts again (or stops, with `repeat: false`).
 * `update()` keeps the new content aside and swaps it in at the next cycle of a loop, or the
 * next bar line of a song (a song's cycle may last minutes); tempo changes apply there too.
 * Stopping fades the output out within 20 ms and frees every voice; starting again builds them
 * anew. The player creates every audio node in its own context (the one current when it is
 * created, or `context`), so it also renders offline inside `Tone.Offline`.
 */

import { Kit, SampleBank } from "./kit.js";
import { arrangeSong, compileLoop } from "./pattern.js";
import { midiToFrequency } from "./pitch.js";
import { STEPS_PER_BAR, stepSeconds, stepsPerSecond, tempo } from "./time.js";

/** @typedef {import("./kit.js").ToneLib} ToneLib */
/** @typedef {import("./kit.js").ToneContext} ToneContext */
/** @typedef {import("./pitch.js").TonalLib} TonalLib */
/** @typedef {import("./time.js").LoopContent} LoopContent */
/** @typedef {import("./time.js").SongContent} SongContent */
/** @typedef {import("./pattern.js").LoopPattern} LoopPattern */
/** @typedef {import("./pattern.js").Placement} Placement */

/** The output level before Tone's destination: headroom for a busy loop. */
export const MASTER_GAIN = 0.8;
/** How fast Stop silences the output (seconds). */
export const STOP_FADE = 0.015;

/**
 * @typedef {object} PlayerOptions
 * @property {ToneLib} Tone the Tone.js library
 * @property {TonalLib} Tonal the tonal library
 * @property {"loop" | "song"} kind
 * @property {LoopContent | SongContent} content
 * @property {Record<string, LoopContent>} [loops] a song's loops by id (blocks of other ids are silent)
 * @property {Record<string, string>} [samples] sample id -> file URL, for `sample:<id>` sounds
 * @property {(position: Position) => void} [onStep] the playhead
 * @property {(error: Error) => void} [onError] a sample that failed to load, a scheduling error
 * @property {() => void} [onEnd] a song that does not repeat reached its end
 * @property {boolean} [repeat] start again at the end (default true)
 * @property {import("tone").InputNode} [destination] where the sound goes (default the context's destination)
 * @property {ToneContext} [context] the audio context (default the one current at creation)
 * @property {SampleBank} [sampleBank] decoded samples to share with another player
 */

/**
 * Where the playhead is.
 * @typedef {object} Position
 * @property {number} step the step in the loop's cycle, or in the song
 * @property {number} bar the bar of that step (from 0)
 * @property {number} cycle how many times the loop (or song) started again since Play
 * @property {number} time when the step sounds, in the audio context's seconds
 * @property {{id: string, loopId: string, step: number}[]} blocks a song's blocks playing at
 *   this step, each with the step of its loop ([] for a loop)
 */

/**
 * Everything the player needs to play one version of the content.
 * @typedef {object} Program
 * @property {number} bpm
 * @property {number} steps the cycle: a loop's length, or the song's (at least one bar)
 * @property {LoopPattern | null} loop a loop's pattern
 * @property {Placement[]} blocks a song's blocks
 * @property {Map<string, LoopPattern>} patterns a song's loops' patterns
 * @property {Set<string>} sounds every sound id used
 */

/**
 * @param {PlayerOptions} options
 * @returns {Player}
 */
export function createPlayer(options) {
  return new Player(options);
}

/** Plays one loop or song; see the module's documentation. */
export class Player {
  /** @param {PlayerOptions} options */
  constructor(options) {
    this._tone = options.Tone;
    this._tonal = options.Tonal;
    this.kind = options.kind;
    this._context = options.context ?? options.Tone.getContext();
    this._destination = options.destination ?? this._context.destination;
    this._repeat = options.repeat ?? true;
    this._onStep = options.onStep;
    this._onEnd = options.onEnd;
    /** @type {(error: Error) => void} */
    this._onError =
      options.onError ??
      ((error) => {
        console.error(error);
      });
    this._samples = options.sampleBank ?? new SampleBank(options.Tone);
    this._samples.onError = (error, url) => this._onError(new Error(`sample ${url}: ${error.message}`));
    this._samples.setUrls(options.samples ?? {});
    /** @type {Record<string, LoopContent>} */
    this._loops = options.loops ?? {};
    /** @type {Program} */
    this._program = this._compile(options.content);
    /** @type {Program | null} */
    this._pending = null;
    /** @type {import("tone").Clock | null} */
    this._clock = null;
    /** @type {Kit | null} */
    this._kit = null;
    /** @type {import("tone").Gain | null} */
    this._master = null;
    this._cycleStart = 0;
    this._cycle = 0;
  }

  /** @returns {boolean} whether it is playing */
  get playing() {
    return this._clock !== null;
  }

  /** @returns {number} the tempo it plays at now */
  get bpm() {
    return this._program.bpm;
  }

  /** @returns {number} the length of the current cycle in steps */
  get cycleSteps() {
    return this._program.steps;
  }

  /** @returns {Promise<void>} settles when every sample named so far has loaded or failed */
  ready() {
    return this._samples.ready();
  }

  /**
   * @param {LoopContent | SongContent} content
   * @returns {Program}
   */
  _compile(content) {
    const bpm = tempo(content.bpm);
    if (this.kind === "loop") {
      const loop = compileLoop(this._tonal, /** @type {LoopContent} */ (content));
      return { bpm, steps: loop.steps, loop, blocks: [], patterns: new Map(), sounds: loop.sounds };
    }
    const song = arrangeSong(/** @type {SongContent} */ (content));
    /** @type {Map<string, LoopPattern>} */
    const patterns = new Map();
    /** @type {Set<string>} */
    const sounds = new Set();
    for (const block of song.blocks) {
      const loop = this._loops[block.loopId];
      if (loop === undefined || patterns.has(block.loopId)) continue;
      const pattern = compileLoop(this._tonal, loop);
      patterns.set(block.loopId, pattern);
      for (const sound of pattern.sounds) sounds.add(sound);
    }
    return { bpm, steps: Math.max(song.steps, STEPS_PER_BAR), loop: null, blocks: song.blocks, patterns, sounds };
  }

  /**
   * Start playing (resuming the audio context first, as browsers ask).
   * @param {number} [time] when, in the context's seconds (default: as soon as possible)
   * @returns {Promise<number>} when the first step sounds
   */
  async start(time) {
    const playing = this._startedAt();
    if (playing !== null) return playing;
    if (!this._context.isOffline && this._context.state !== "running") {
      await this._context.resume();
      const meanwhile = this._startedAt(); // another start() while the context resumed
      if (meanwhile !== null) return meanwhile;
    }
    if (this._pending) {
      this._program = this._pending;
      this._pending = null;
    }
    const master = new this._tone.Gain({ context: this._context, gain: MASTER_GAIN });
    master.connect(this._destination);
    const kit = new Kit(this._tone, this._context, master, this._samples);
    kit.prepare(this._program.sounds);
    const clock = new this._tone.Clock({
      context: this._context,
      frequency: stepsPerSecond(this._program.bpm),
      callback: (tickTime, ticks) => this._tick(tickTime, ticks ?? Math.round(clock.getTicksAtTime(tickTime))),
    });
    this._master = master;
    this._kit = kit;
    this._clock = clock;
    this._cycleStart = 0;
    this._cycle = 0;
    const at = time ?? this._context.now();
    clock.start(at);
    return at;
  }

  /** @returns {number | null} when the first step sounded, if playing */
  _startedAt() {
    return this._clock ? this._clock.getTimeOfTick(0) : null;
  }

  /**
   * Stop: the output fades out within STOP_FADE and every voice is freed.
   * @param {number} [time] when, in the context's seconds (default: now)
   */
  stop(time) {
    const clock = this._clock;
    const kit = this._kit;
    const master = this._master;
    if (!clock || !kit || !master) return;
    this._clock = this._kit = this._master = null;
    const at = Math.max(time ?? this._context.currentTime, this._context.currentTime);
    clock.stop(at);
    clock.dispose();
    this._context.draw.cancel(at);
    master.gain.cancelAndHoldAtTime(at);
    master.gain.linearRampToValueAtTime(0, at + STOP_FADE);
    // Sounds already handed to the voices (up to one look-ahead ahead) stay muted until freed.
    const free = () => {
      kit.dispose();
      master.dispose();
    };
    const delay = at - this._context.currentTime + STOP_FADE + this._context.lookAhead + 0.05;
    if (this._context.isOffline) free();
    else setTimeout(free, Math.max(0, delay) * 1000);
  }

  /**
   * New content (a live edit): heard from the next loop cycle, or a song's next bar line.
   * @param {LoopContent | SongContent} content
   * @param {{loops?: Record<string, LoopContent>, samples?: Record<string, string>}} [more]
   *   a song's loops (replacing the ones it had), more sample URLs
   */
  update(content, more = {}) {
    if (more.samples) this._samples.setUrls(more.samples);
    if (more.loops) this._loops = more.loops;
    const program = this._compile(content);
    if (this._kit) {
      this._kit.prepare(program.sounds);
      this._pending = program;
    } else {
      this._program = program;
      this._pending = null;
    }
  }

  /** Stop and let go of the player. */
  dispose() {
    this.stop();
  }

  /**
   * One step of the clock.
   * @param {number} time when the step sounds
   * @param {number} ticks the step's number since Play
   */
  _tick(time, ticks) {
    const kit = this._kit;
    if (!kit) return;
    try {
      let position = ticks - this._cycleStart;
      if (position >= this._program.steps) {
        if (!this._repeat && !this._pending) {
          this._end(time);
          return;
        }
        this._cycleStart = ticks;
        this._cycle += 1;
        position = 0;
      }
      const boundary = this.kind === "loop" ? position === 0 : position % STEPS_PER_BAR === 0;
      if (this._pending && boundary) {
        this._swap(time);
        if (position >= this._program.steps) {
          this._cycleStart = ticks;
          this._cycle += 1;
          position = 0;
        }
      }
      const blocks = this._play(kit, position, time);
      const onStep = this._onStep;
      if (onStep) {
        /** @type {Position} */
        const at = { step: position, bar: Math.floor(position / STEPS_PER_BAR), cycle: this._cycle, time, blocks };
        this._context.draw.schedule(() => onStep(at), time);
      }
    } catch (error) {
      this._onError(error instanceof Error ? error : new Error(String(error)));
    }
  }

  /**
   * Swap in the pending program, with its tempo from this step on.
   * @param {number} time
   */
  _swap(time) {
    const program = /** @type {Program} */ (this._pending);
    this._pending = null;
    if (program.bpm !== this._program.bpm && this._clock) {
      this._clock.frequency.setValueAtTime(stepsPerSecond(program.bpm), time);
    }
    this._program = program;
  }

  /**
   * Start the sounds of one step.
   * @param {Kit} kit
   * @param {number} position the step in the cycle
   * @param {number} time
   * @returns {{id: string, loopId: string, step: number}[]} the song's blocks playing
   */
  _play(kit, position, time) {
    const program = this._program;
    const seconds = stepSeconds(program.bpm);
    if (program.loop) {
      this._playPattern(kit, program.loop, position, Infinity, time, seconds);
      return [];
    }
    const playing = [];
    for (const block of program.blocks) {
      if (block.start > position) break;
      if (position >= block.end) continue;
      const pattern = program.patterns.get(block.loopId);
      const step = pattern ? (position - block.start) % pattern.steps : position - block.start;
      playing.push({ id: block.id, loopId: block.loopId, step });
      if (pattern) this._playPattern(kit, pattern, step, block.end - position, time, seconds);
    }
    return playing;
  }

  /**
   * @param {Kit} kit
   * @param {LoopPattern} pattern
   * @param {number} step the step in the loop
   * @param {number} room steps left before the sound must stop (a song block's end)
   * @param {number} time
   * @param {number} seconds the length of a step
   */
  _playPattern(kit, pattern, step, room, time, seconds) {
    for (const note of pattern.notes.get(step) ?? []) {
      const frequency = note.midi === null ? null : midiToFrequency(this._tonal, note.midi);
      kit.play(note.soundId, time, Math.min(note.steps, room) * seconds, note.velocity, frequency);
    }
    const chord = pattern.chords.get(step);
    if (chord) {
      const frequencies = chord.midis.map((midi) => midiToFrequency(this._tonal, midi));
      kit.chord(frequencies, time, Math.min(chord.steps, room) * seconds);
    }
  }

  /**
   * A song without repeat reached its end.
   * @param {number} time
   */
  _end(time) {
    this.stop(time);
    const onEnd = this._onEnd;
    if (onEnd) this._context.draw.schedule(onEnd, time);
  }
}
