// The test page's driver: the player (pages/static/player.js, as the public pages will load it)
// with a grid that follows its playhead, a tap on the page's audio output (an AudioWorklet after
// Tone's destination) and offline renders of the same player. The browser tests call window.harness.
import { createPlayer } from "/static/player.js";
import { chordSpans, loopSteps, stepPosition, STEPS_PER_BAR, songSteps, blockSpan } from "/static/time.js";

const Tone = window.Tone;
const Tonal = window.Tonal;
const state = { player: null, steps: [], chunks: [], errors: [], ended: 0 };

function encode(samples) {
  const bytes = new Uint8Array(samples.buffer, samples.byteOffset, samples.byteLength);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function drawLoop(content) {
  const columns = loopSteps(content);
  const sounds = [...new Set((content.iconSequence ?? []).map((s) => s.soundId))];
  const grid = element("div", "grid");
  grid.style.gridTemplateColumns = `max-content repeat(${columns}, minmax(6px, 1fr))`;
  grid.append(element("span", "label", "chords"));
  let column = 0;
  for (const span of chordSpans(content)) {
    if (span.start > column) {
      const gap = element("span");
      gap.style.gridColumn = `span ${span.start - column}`;
      grid.append(gap);
    }
    const chip = element("span", "chord", span.chord.chord);
    chip.style.gridColumn = `span ${span.end - span.start}`;
    grid.append(chip);
    column = span.end;
  }
  if (column < columns) {
    const rest = element("span");
    rest.style.gridColumn = `span ${columns - column}`;
    grid.append(rest);
  }
  for (const sound of sounds) {
    grid.append(element("span", "label", sound));
    const on = new Set((content.iconSequence ?? []).filter((s) => s.soundId === sound).map(stepPosition));
    for (let step = 0; step < columns; step += 1) {
      const cell = element("span", `cell${on.has(step) ? " on" : ""}${step % STEPS_PER_BAR === 0 ? " bar" : ""}`);
      cell.dataset.step = String(step);
      grid.append(cell);
    }
  }
  return grid;
}

function drawSong(content, loops) {
  const total = Math.max(songSteps(content), STEPS_PER_BAR);
  const lane = element("div", "blocks");
  for (const block of content.timeline ?? []) {
    const span = blockSpan(block);
    const node = element("span", "block", loops?.[block.loopId]?.name ?? block.loopId);
    node.dataset.block = block.id;
    node.style.left = `${(100 * span.start) / total}%`;
    node.style.width = `${(100 * (span.end - span.start)) / total}%`;
    node.style.background = block.color ?? "#7bdcff";
    lane.append(node);
  }
  return lane;
}

function showPosition(position) {
  for (const node of document.querySelectorAll(".now")) node.classList.remove("now");
  for (const node of document.querySelectorAll(`.cell[data-step="${position.step}"]`)) node.classList.add("now");
  for (const block of position.blocks) {
    document.querySelector(`.block[data-block="${block.id}"]`)?.classList.add("now");
  }
  document.getElementById("log").textContent =
    `step ${position.step} · bar ${position.bar + 1} · cycle ${position.cycle}` +
    (position.blocks.length ? ` · ${position.blocks.map((b) => `${b.id}@${b.step}`).join(", ")}` : "");
}

function onStep(position) {
  state.steps.push({ ...position, now: Tone.getContext().currentTime });
  showPosition(position);
}

window.harness = {
  async tap() {
    const context = Tone.getContext();
    await context.addAudioWorkletModule("/harness/recorder.js");
    const node = context.createAudioWorkletNode("recorder", { numberOfInputs: 1, numberOfOutputs: 1 });
    node.port.onmessage = (event) => state.chunks.push(event.data);
    Tone.getDestination().output.connect(node);
    node.connect(context.rawContext.destination);
  },
  load(kind, content, extra = {}) {
    state.player?.dispose();
    state.steps = [];
    state.errors = [];
    state.player = createPlayer({
      Tone,
      Tonal,
      kind,
      content,
      ...extra,
      onStep,
      onError: (error) => state.errors.push(String(error.message)),
      onEnd: () => (state.ended += 1),
    });
    document.getElementById("title").textContent = content.name ?? kind;
    document.getElementById("picture").replaceChildren(
      kind === "loop" ? drawLoop(content) : drawSong(content, extra.loops),
    );
  },
  ready: () => state.player.ready(),
  start: (time) => state.player.start(time),
  stop() {
    state.player.stop();
    return Tone.getContext().currentTime;
  },
  update: (content, extra) => state.player.update(content, extra),
  now: () => Tone.getContext().currentTime,
  playing: () => state.player.playing,
  steps: () => state.steps,
  errors: () => state.errors,
  ended: () => state.ended,
  contextState: () => Tone.getContext().state,
  recording() {
    const chunks = state.chunks.filter((chunk) => chunk.samples);
    if (chunks.length === 0) return null;
    const first = chunks[0].frame;
    const last = chunks[chunks.length - 1];
    const data = new Float32Array(last.frame + last.samples.length - first);
    for (const chunk of chunks) data.set(chunk.samples, chunk.frame - first);
    return { sampleRate: Tone.getContext().sampleRate, startFrame: first, data: encode(data) };
  },
  async offline(kind, content, seconds, extra = {}) {
    const buffer = await Tone.Offline(async () => {
      const player = createPlayer({ Tone, Tonal, kind, content, ...extra });
      await player.ready();
      await player.start(0);
    }, seconds, 1);
    return { sampleRate: buffer.sampleRate, startFrame: 0, data: encode(buffer.getChannelData(0)) };
  },
};

document.getElementById("play").addEventListener("click", async (event) => {
  const button = event.currentTarget;
  if (state.player.playing) {
    state.player.stop();
    button.textContent = "Play";
  } else {
    await state.player.start();
    button.textContent = "Stop";
  }
});
window.harnessReady = true;
