// @ts-check
/**
 * The sounds: a built-in kit synthesized with Tone.js for the composer's sound ids, uploaded
 * samples played from their files, and the chord pad.
 *
 * | sound id      | what plays                                              | pitch          |
 * |---------------|---------------------------------------------------------|----------------|
 * | `drum-kick`   | a pitched membrane (Tone.MembraneSynth)                  | fixed (C1)     |
 * | `drum-snare`  | band-passed white noise over a short membrane             | fixed          |
 * | `drum-hihat`  | a short metallic hit (Tone.MetalSynth)                   | fixed          |
 * | `bass-sub`    | a sine-and-triangle mono synth with a low-pass filter    | step's, else C2 |
 * | `synth-lead`  | a sawtooth poly synth with a low-pass filter             | step's, else C4 |
 * | `synth-pad`   | a soft, slowly rising triangle poly synth                | step's, else C4 |
 * | `synth-pluck` | a fast-decaying triangle poly synth                      | step's, else C5 |
 * | `sample:<id>` | the uploaded sample (a Tone.Player on the file at the URL the page gives for `<id>`), once through, at its own pitch, louder with velocity | none |
 * | anything else | the fallback: a short sine blip                         | step's, else C5 |
 *
 * The fallback also plays for a sample the page gave no URL for, or whose file could not be
 * fetched or decoded (so the rhythm stays audible); a sample still loading is silent.
 * Drums last as long as their own envelope; the other sounds last `duration16` steps.
 * The chord pad is a separate, quieter poly synth (see pitch.js for its voicing).
 */

/** @typedef {typeof import("tone")} ToneLib */
/** @typedef {import("tone").BaseContext} ToneContext */
/** @typedef {import("tone").InputNode} InputNode */

export const SAMPLE_PREFIX = "sample:";
export const FALLBACK_SOUND = "fallback";

/**
 * One sound of the kit.
 * @typedef {object} Voice
 * @property {(time: number, seconds: number, velocity: number, frequency: number | null) => void} play
 * @property {() => void} dispose
 */

/**
 * How each built-in sound is made: a function of the Tone library, the context and the output.
 * @type {Record<string, (tone: ToneLib, context: ToneContext, output: InputNode) => Voice>}
 */
const BUILT_IN = {
  "drum-kick": (tone, context, output) => {
    const synth = new tone.MembraneSynth({
      context,
      volume: -4,
      pitchDecay: 0.03,
      octaves: 6,
      envelope: { attack: 0.001, decay: 0.28, sustain: 0, release: 0.05 },
    }).connect(output);
    return {
      play: (time, _seconds, velocity) => synth.triggerAttackRelease("C1", 0.1, time, velocity),
      dispose: () => synth.dispose(),
    };
  },
  "drum-snare": (tone, context, output) => {
    const filter = new tone.Filter({ context, type: "bandpass", frequency: 1800, Q: 0.8 }).connect(output);
    const noise = new tone.NoiseSynth({
      context,
      volume: -8,
      noise: { type: "white" },
      envelope: { attack: 0.001, decay: 0.16, sustain: 0, release: 0.03 },
    }).connect(filter);
    const body = new tone.MembraneSynth({
      context,
      volume: -14,
      pitchDecay: 0.02,
      octaves: 3,
      envelope: { attack: 0.001, decay: 0.1, sustain: 0, release: 0.02 },
    }).connect(output);
    return {
      play: (time, _seconds, velocity) => {
        noise.triggerAttackRelease(0.1, time, velocity);
        body.triggerAttackRelease("G2", 0.05, time, velocity);
      },
      dispose: () => {
        noise.dispose();
        body.dispose();
        filter.dispose();
      },
    };
  },
  "drum-hihat": (tone, context, output) => {
    const synth = new tone.MetalSynth({
      context,
      volume: -22,
      envelope: { attack: 0.001, decay: 0.06, release: 0.01 },
      harmonicity: 5.1,
      modulationIndex: 32,
      resonance: 4000,
      octaves: 1.5,
    }).connect(output);
    return {
      play: (time, _seconds, velocity) => synth.triggerAttackRelease(250, 0.03, time, velocity),
      dispose: () => synth.dispose(),
    };
  },
  "bass-sub": (tone, context, output) =>
    pitched(
      new tone.MonoSynth({
        context,
        volume: -8,
        oscillator: { type: "fatsine", count: 2, spread: 10 },
        filter: { type: "lowpass", Q: 1 },
        filterEnvelope: { attack: 0.01, decay: 0.2, sustain: 0.5, baseFrequency: 120, octaves: 2 },
        envelope: { attack: 0.005, decay: 0.2, sustain: 0.8, release: 0.12 },
      }).connect(output),
      tone.Frequency("C2").toFrequency(),
    ),
  "synth-lead": (tone, context, output) => {
    const filter = new tone.Filter({ context, type: "lowpass", frequency: 2400, Q: 1 }).connect(output);
    const synth = new tone.PolySynth({
      context,
      volume: -14,
      voice: tone.Synth,
      options: {
        oscillator: { type: "sawtooth" },
        envelope: { attack: 0.005, decay: 0.15, sustain: 0.5, release: 0.15 },
      },
    }).connect(filter);
    return withDispose(pitched(synth, tone.Frequency("C4").toFrequency()), filter);
  },
  "synth-pad": (tone, context, output) =>
    pitched(
      new tone.PolySynth({
        context,
        volume: -16,
        voice: tone.Synth,
        options: {
          oscillator: { type: "fattriangle", count: 3, spread: 20 },
          envelope: { attack: 0.2, decay: 0.3, sustain: 0.7, release: 0.6 },
        },
      }).connect(output),
      tone.Frequency("C4").toFrequency(),
    ),
  "synth-pluck": (tone, context, output) =>
    pitched(
      new tone.PolySynth({
        context,
        volume: -10,
        voice: tone.Synth,
        options: {
          oscillator: { type: "triangle" },
          envelope: { attack: 0.002, decay: 0.25, sustain: 0, release: 0.1 },
        },
      }).connect(output),
      tone.Frequency("C5").toFrequency(),
    ),
  [FALLBACK_SOUND]: (tone, context, output) =>
    pitched(
      new tone.PolySynth({
        context,
        volume: -14,
        voice: tone.Synth,
        options: {
          oscillator: { type: "sine" },
          envelope: { attack: 0.002, decay: 0.12, sustain: 0, release: 0.05 },
        },
      }).connect(output),
      tone.Frequency("C5").toFrequency(),
    ),
};

/** The sound ids with a sound of their own in the kit (the rest play the fallback). */
export const KIT_SOUND_IDS = Object.freeze(Object.keys(BUILT_IN).filter((id) => id !== FALLBACK_SOUND));

/**
 * A voice that plays a note for `seconds`, at the step's frequency or its own default.
 * @param {{triggerAttackRelease: (note: number, duration: number, time: number, velocity: number) => unknown, dispose: () => unknown}} synth
 * @param {number} defaultFrequency
 * @returns {Voice}
 */
function pitched(synth, defaultFrequency) {
  return {
    play: (time, seconds, velocity, frequency) =>
      synth.triggerAttackRelease(frequency ?? defaultFrequency, seconds, time, velocity),
    dispose: () => synth.dispose(),
  };
}

/**
 * @param {Voice} voice
 * @param {{dispose: () => unknown}} node another node to dispose of with the voice
 * @returns {Voice}
 */
function withDispose(voice, node) {
  return {
    play: voice.play,
    dispose: () => {
      voice.dispose();
      node.dispose();
    },
  };
}

/**
 * @param {string} soundId
 * @returns {string | null} the sample id of a `sample:<id>` sound, or null
 */
export function sampleId(soundId) {
  return soundId.startsWith(SAMPLE_PREFIX) ? soundId.slice(SAMPLE_PREFIX.length) : null;
}

/**
 * Uploaded samples' audio, fetched once from the URLs the page gives and kept decoded.
 * Audio buffers belong to no audio context, so one bank serves every kit (also an offline one).
 */
export class SampleBank {
  /** @param {ToneLib} tone */
  constructor(tone) {
    this._tone = tone;
    /** @type {Map<string, string>} sample id -> URL */
    this._urls = new Map();
    /** @type {Map<string, Promise<import("tone").ToneAudioBuffer | null>>} URL -> its buffer */
    this._loads = new Map();
    /** @type {Map<string, import("tone").ToneAudioBuffer | null>} URL -> its buffer once settled */
    this._settled = new Map();
    /** @type {(error: Error, url: string) => void} */
    this.onError = () => {};
  }

  /**
   * Add or change sample URLs and start fetching the new ones.
   * @param {Record<string, string>} urls sample id -> file URL
   */
  setUrls(urls) {
    for (const [id, url] of Object.entries(urls)) {
      if (typeof url !== "string" || url === "") continue;
      this._urls.set(id, url);
      this._load(url);
    }
  }

  /**
   * @param {string} url
   * @returns {Promise<import("tone").ToneAudioBuffer | null>}
   */
  _load(url) {
    let load = this._loads.get(url);
    if (!load) {
      load = this._tone.ToneAudioBuffer.fromUrl(url).then(
        (buffer) => {
          this._settled.set(url, buffer);
          return buffer;
        },
        (/** @type {unknown} */ error) => {
          this._settled.set(url, null);
          this.onError(error instanceof Error ? error : new Error(String(error)), url);
          return null;
        },
      );
      this._loads.set(url, load);
    }
    return load;
  }

  /** @returns {Promise<void>} settles when every sample asked for so far has loaded or failed */
  async ready() {
    await Promise.all(this._loads.values());
  }

  /**
   * @param {string} id a sample id
   * @returns {"loaded" | "loading" | "missing"} missing: no URL, or its file failed to load
   */
  state(id) {
    const url = this._urls.get(id);
    if (url === undefined) return "missing";
    if (!this._settled.has(url)) return "loading";
    return this._settled.get(url) ? "loaded" : "missing";
  }

  /**
   * @param {string} id a sample id
   * @returns {import("tone").ToneAudioBuffer | null} its decoded audio, once loaded
   */
  buffer(id) {
    const url = this._urls.get(id);
    return (url !== undefined && this._settled.get(url)) || null;
  }
}

/**
 * The voices of one playing session, created on first use in the player's audio context and
 * connected to its output. Dispose of it to silence and free everything at once.
 */
export class Kit {
  /**
   * @param {ToneLib} tone
   * @param {ToneContext} context
   * @param {InputNode} output
   * @param {SampleBank} samples
   */
  constructor(tone, context, output, samples) {
    this._tone = tone;
    this._context = context;
    this._output = output;
    this._samples = samples;
    /** @type {Map<string, Voice>} */
    this._voices = new Map();
    /** @type {import("tone").PolySynth | null} */
    this._pad = null;
    /** @type {import("tone").Filter | null} */
    this._padFilter = null;
  }

  /**
   * Create the voices for these sounds now, so that playing them later builds no audio nodes.
   * @param {Iterable<string>} soundIds
   */
  prepare(soundIds) {
    for (const soundId of soundIds) this._voice(soundId);
  }

  /**
   * @param {string} soundId
   * @returns {Voice | null} null for a sample still loading
   */
  _voice(soundId) {
    const sample = sampleId(soundId);
    let key = soundId in BUILT_IN && soundId !== FALLBACK_SOUND ? soundId : FALLBACK_SOUND;
    if (sample !== null) {
      const state = this._samples.state(sample);
      if (state === "loading") return null;
      key = state === "loaded" ? soundId : FALLBACK_SOUND;
    }
    let voice = this._voices.get(key);
    if (!voice) {
      const buffer = sample !== null ? this._samples.buffer(sample) : null;
      voice = buffer ? this._sampleVoice(buffer) : BUILT_IN[key](this._tone, this._context, this._output);
      this._voices.set(key, voice);
    }
    return voice;
  }

  /**
   * @param {import("tone").ToneAudioBuffer} buffer
   * @returns {Voice}
   */
  _sampleVoice(buffer) {
    const player = new this._tone.Player({ context: this._context, url: buffer }).connect(this._output);
    return {
      play: (time, _seconds, velocity) => {
        player.volume.setValueAtTime(this._tone.gainToDb(Math.max(velocity, 0.001)), time);
        player.start(time);
      },
      dispose: () => player.dispose(),
    };
  }

  /**
   * Start a sound.
   * @param {string} soundId
   * @param {number} time when, in the context's seconds
   * @param {number} seconds how long (pitched sounds; drums and samples have their own length)
   * @param {number} velocity 0..1
   * @param {number | null} frequency Hz, or null for the sound's own note
   */
  play(soundId, time, seconds, velocity, frequency) {
    this._voice(soundId)?.play(time, seconds, velocity, frequency);
  }

  /**
   * Play a chord on the pad.
   * @param {number[]} frequencies Hz
   * @param {number} time
   * @param {number} seconds
   */
  chord(frequencies, time, seconds) {
    if (frequencies.length === 0) return;
    if (!this._pad) {
      this._pad = new this._tone.PolySynth({
        context: this._context,
        volume: -20,
        voice: this._tone.Synth,
        options: {
          oscillator: { type: "fatsawtooth", count: 2, spread: 12 },
          envelope: { attack: 0.08, decay: 0.4, sustain: 0.6, release: 0.5 },
        },
      });
      const filter = new this._tone.Filter({ context: this._context, type: "lowpass", frequency: 1400 });
      this._pad.chain(filter, this._output);
      this._padFilter = filter;
    }
    this._pad.triggerAttackRelease(frequencies, seconds, time, 0.7);
  }

  /** Disconnect and free every voice (immediate silence). */
  dispose() {
    for (const voice of this._voices.values()) voice.dispose();
    this._voices.clear();
    this._pad?.dispose();
    this._padFilter?.dispose();
    this._pad = this._padFilter = null;
  }
}
