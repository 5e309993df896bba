// @ts-check
/**
 * The script of the public pages (`/loop/<token>`, `/song/<token>`, `/embed/<token>`).
 *
 * The server has already drawn the music (the grid or the timeline, see pages/markup.py), so
 * this script only makes it audible and live:
 * - Play / Stop (the button, or the space key) plays the content with the player; the
 *   `#playhead` moves over the picture in time with the sound (the player's `onStep`);
 * - uploaded samples and a song's loops come from `GET /api/shared/<token>?include=loops`
 *   (only when the content needs them), with the URLs this reader may fetch;
 * - the page follows the document live as a share-link viewer through the client kit (the
 *   `live` bundle, imported after the first render): a change is heard from the next loop
 *   cycle, and the picture is redrawn by the server (the page fetches its own URL again);
 * - a revoked link or a hidden piece stops the music and says so.
 *
 * `window.musicPage` exposes the player and the page's state to the browser tests.
 */

import { createPlayer } from "./player.js";
import { STEPS_PER_BAR } from "./time.js";

/** @typedef {import("./time.js").LoopContent} LoopContent */
/** @typedef {import("./time.js").SongContent} SongContent */
/** @typedef {import("./player.js").Position} Position */

/**
 * What the server put in the page (`#page-data`).
 * @typedef {object} PageData
 * @property {"loop" | "song"} kind
 * @property {string} id
 * @property {string} token
 * @property {string | null} live the URL of the client kit's browser bundle
 * @property {LoopContent & SongContent} content
 */

/**
 * What `/api/shared/<token>` adds: a loop's samples, a song's loops.
 * @typedef {object} SharedExtras
 * @property {{id: string, fileUrl: string | null}[]} [samples]
 * @property {(LoopContent & {id: string})[] | null} [loops]
 */

const REDRAW_DELAY_MS = 120; // edits arriving together are drawn once
const GRID_PITCH_X = 16; // pages/markup.py: CELL_WIDTH + CELL_GAP
const GRID_GAP = 2;

const dataElement = /** @type {HTMLScriptElement} */ (document.getElementById("page-data"));
/** @type {PageData} */
const page = JSON.parse(dataElement.textContent ?? "{}");
const playButton = /** @type {HTMLButtonElement} */ (document.getElementById("play"));
const statusLine = /** @type {HTMLElement} */ (document.getElementById("status"));
const positionLine = /** @type {HTMLElement} */ (document.getElementById("position"));
/** @type {any} */
const windowAny = window;
const Tone = windowAny.Tone;
const Tonal = windowAny.Tonal;

const state = {
  content: page.content,
  /** @type {Record<string, LoopContent>} */
  loops: {},
  /** @type {Record<string, string>} */
  samples: {},
  /** @type {string[]} */
  errors: [],
  /** @type {"connecting" | "live" | "static" | "gone"} */
  live: "static",
  /** @type {string | null} */
  gone: null,
  redraws: 0,
  /** the audio time of the last Play's first step, and of the last Stop */
  startedAt: NaN,
  stoppedAt: NaN,
  /** @type {any} */
  document: null,
};

/** @param {LoopContent & SongContent} content */
function sampleIds(content) {
  return (content.iconSequence ?? [])
    .map((step) => (step && typeof step.soundId === "string" ? step.soundId : ""))
    .filter((id) => id.startsWith("sample:"))
    .map((id) => id.slice("sample:".length));
}

/** Sample URLs (a loop) or the loops (a song) this page needs and does not have yet. */
async function fetchExtras() {
  const needsSamples = page.kind === "loop" && sampleIds(state.content).some((id) => !(id in state.samples));
  if (page.kind === "loop" && !needsSamples) return;
  const query = page.kind === "song" ? "?include=loops" : "";
  const response = await fetch(`/api/shared/${encodeURIComponent(page.token)}${query}`);
  if (!response.ok) throw new Error(`the shared ${page.kind} could not be read (${response.status})`);
  /** @type {{data: SharedExtras}} */
  const body = await response.json();
  for (const sample of body.data.samples ?? []) {
    if (sample.fileUrl) state.samples[sample.id] = sample.fileUrl;
  }
  for (const loop of body.data.loops ?? []) state.loops[loop.id] = loop;
}

/** @param {Position} position */
function showPosition(position) {
  const head = document.getElementById("playhead");
  if (!head) return;
  head.setAttribute("visibility", "visible");
  if (page.kind === "loop") {
    head.setAttribute("x", String(GRID_GAP + position.step * GRID_PITCH_X));
  } else {
    const timeline = head.closest("svg");
    const stepWidth = Number(timeline?.dataset.stepWidth ?? 3);
    head.setAttribute("x", String(1 + position.step * stepWidth));
    const playing = new Set(position.blocks.map((block) => block.id));
    for (const block of document.querySelectorAll("svg.block")) {
      block.classList.toggle("now", playing.has(/** @type {SVGElement} */ (block).dataset.block ?? ""));
    }
  }
  if (position.step % STEPS_PER_BAR === 0) positionLine.textContent = `bar ${position.bar + 1}`;
}

function hidePlayhead() {
  document.getElementById("playhead")?.setAttribute("visibility", "hidden");
  for (const block of document.querySelectorAll("svg.block.now")) block.classList.remove("now");
}

const player = createPlayer({
  Tone,
  Tonal,
  kind: page.kind,
  content: state.content,
  onStep: showPosition,
  onError: (error) => {
    state.errors.push(error.message);
    console.warn(error);
  },
});

function showPlaying() {
  playButton.textContent = player.playing ? "Stop" : "Play";
  playButton.setAttribute("aria-pressed", String(player.playing));
  playButton.setAttribute("aria-label", player.playing ? "Stop" : `Play ${state.content.name ?? ""}`.trim());
}

async function toggle() {
  if (state.gone) return;
  if (player.playing) {
    player.stop();
    state.stoppedAt = Tone.getContext().currentTime;
    hidePlayhead();
  } else {
    state.startedAt = await player.start();
  }
  showPlaying();
}

playButton.addEventListener("click", () => {
  toggle().catch((error) => console.error(error));
});
document.addEventListener("keydown", (event) => {
  const target = /** @type {HTMLElement} */ (event.target);
  if (event.code !== "Space" || event.repeat || target.closest("a, button, input, textarea, select")) return;
  event.preventDefault(); // not a page scroll
  toggle().catch((error) => console.error(error));
});

/** The piece is no longer shared: stop, and say so (the picture stays as it was). */
/** @param {string} message */
function showGone(message) {
  state.gone = message;
  state.live = "gone";
  if (player.playing) player.stop();
  hidePlayhead();
  playButton.disabled = true;
  showPlaying();
  statusLine.textContent = message;
  statusLine.classList.add("gone");
}

let redrawTimer = 0;
/** Redraw the picture from the server's rendering of the current version. */
function scheduleRedraw() {
  window.clearTimeout(redrawTimer);
  redrawTimer = window.setTimeout(() => {
    redraw().catch((error) => console.warn(error));
  }, REDRAW_DELAY_MS);
}

async function redraw() {
  const response = await fetch(location.pathname, { cache: "no-cache" });
  if (response.status === 410 || response.status === 404) {
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    const title = fresh.querySelector("h1")?.textContent;
    const why = fresh.querySelector(".by")?.textContent;
    showGone([title, why].filter(Boolean).join(". ") || "This piece is no longer shared");
    return;
  }
  if (!response.ok) return;
  const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
  for (const selector of ["h1", "dl", ".sheet", "ol.chords"]) {
    const now = document.querySelector(selector);
    const next = fresh.querySelector(selector);
    if (now && next) now.replaceWith(document.importNode(next, true));
    else if (now) now.remove();
    else if (next) document.querySelector(".sheet")?.after(document.importNode(next, true));
  }
  state.redraws += 1;
}

/** @param {LoopContent & SongContent} content */
async function changed(content) {
  state.content = { ...state.content, ...content };
  await fetchExtras().catch((error) => state.errors.push(String(error)));
  player.update(state.content, { loops: state.loops, samples: state.samples });
  scheduleRedraw();
}

/** Follow the document as a share-link viewer (read-only; viewers never take editors' places). */
async function follow() {
  if (!page.live) return;
  state.live = "connecting";
  const kit = await import(page.live);
  const client = kit.createClient({ baseUrl: location.origin, storage: new kit.MemoryStorage() });
  const open = page.kind === "loop" ? client.openLoop.bind(client) : client.openSong.bind(client);
  const live = open(page.id, { shareToken: page.token });
  state.document = live;
  live.on("change", (/** @type {{origin: string, content: LoopContent & SongContent}} */ event) => {
    if (event.origin !== "local") changed(event.content).catch((error) => console.warn(error));
  });
  // Revoked, expired or hidden: the page's own URL now answers the problem page, which says which.
  live.on("access_revoked", () => {
    showGone("This piece is no longer shared");
    redraw().catch((error) => console.warn(error));
  });
  live.on("document_deleted", () => showGone("This piece was deleted"));
  live.on("status", () => {
    if (!state.gone) state.live = live.status === "synced" ? "live" : "connecting";
  });
  await live.whenSynced();
  if (!state.gone) state.live = "live";
}

async function main() {
  await fetchExtras().catch((error) => state.errors.push(String(error)));
  player.update(state.content, { loops: state.loops, samples: state.samples });
  playButton.disabled = false;
  showPlaying();
  windowAny.musicPage.ready = true;
  await follow();
}

windowAny.musicPage = { player, state, ready: false, Tone };
main().catch((error) => {
  state.errors.push(String(error));
  console.error(error);
});
