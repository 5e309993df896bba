"""The public pages' player (pages/static) in Debian's chromium: what it plays, heard.

A small aiohttp site serves the player's modules, Tone.js's and tonal's browser builds from
node_modules, and a test page (tests/browser/player_harness). The page taps its audio output
with an AudioWorklet after Tone's destination (live), or renders the same player offline with
``Tone.Offline``; the tests read onsets, levels and pitches from those samples.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import BrowserContext, Page, async_playwright

from pages import timing
from pages.sounds import KIT
from tests.audio_fixtures import wav_bytes
from tests.browser.audio_signal import Recording, close_to
from tests.browser.chromium import CHROMIUM
from tests.browser.chromium import FLAGS as CHROMIUM_FLAGS

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "pages" / "static"
HARNESS = Path(__file__).resolve().parent / "player_harness"
VENDOR = {
    "Tone.js": ROOT / "node_modules" / "tone" / "build" / "Tone.js",
    "tonal.min.js": ROOT / "node_modules" / "tonal" / "browser" / "tonal.min.js",
}
FIXTURE = ROOT / "tests" / "fixtures" / "composer-localstorage.json"  # a copy of shared/fixtures

FLAGS = [*CHROMIUM_FLAGS, "--autoplay-policy=no-user-gesture-required"]  # the harness plays unprompted

ONSET_TOLERANCE = 0.020  # seconds, as issue 30 asks
SAMPLE_SECONDS = 0.3
C4, C5, A4 = 261.63, 523.25, 440.0


def kicks(*steps: int, bpm: int = 120, length: int = 1) -> dict[str, Any]:
    return {
        "name": "Kicks",
        "length": length,
        "bpm": bpm,
        "chordProgression": [],
        "iconSequence": [{"step": s, "soundId": "drum-kick", "velocity": 1.0} for s in steps],
    }


def lead(pitch: int, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "length": 1,
        "chordProgression": [],
        "iconSequence": [
            {"step": 0, "soundId": "synth-lead", "velocity": 1.0, "pitch": pitch, "duration16": 4}
        ],
    }


@pytest.fixture
async def samples_origin(aiohttp_server: Any) -> str:
    """Another origin serving an uploaded sample with CORS, as local storage or S3 would."""

    async def beep(_request: web.Request) -> web.Response:
        return web.Response(
            body=wav_bytes(SAMPLE_SECONDS),
            content_type="audio/wav",
            headers={"Access-Control-Allow-Origin": "*"},
        )

    app = web.Application()
    app.router.add_get("/samples/beep.wav", beep)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
async def site(aiohttp_server: Any) -> str:
    async def index(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(HARNESS / "index.html")

    async def vendor(request: web.Request) -> web.FileResponse:
        path = VENDOR.get(request.match_info["name"])
        if path is None:
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/vendor/{name}", vendor)
    app.router.add_static("/static/", STATIC)
    app.router.add_static("/harness/", HARNESS)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
async def page(site: str) -> AsyncIterator[Page]:
    with tempfile.TemporaryDirectory(prefix="mp-chromium-") as profile:
        async with async_playwright() as playwright:
            context: BrowserContext = await playwright.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=FLAGS,
                viewport={"width": 1100, "height": 520},
                device_scale_factor=1,
            )
            try:
                tab = await context.new_page()
                problems: list[str] = []
                tab.on("pageerror", lambda error: problems.append(str(error)))
                await tab.goto(f"{site}/")
                await tab.wait_for_function("window.harnessReady === true")
                yield tab
                assert problems == []
            finally:
                await context.close()


async def call(page: Page, expression: str, *args: Any) -> Any:
    """Evaluate ``harness.<expression>`` with JSON arguments."""
    arguments = ", ".join(json.dumps(a) for a in args)
    return await page.evaluate(f"async () => window.harness.{expression}({arguments})")


async def wait_until(page: Page, context_time: float) -> None:
    await page.wait_for_function(f"window.harness.now() >= {context_time}", polling=50, timeout=30_000)


async def play_live(
    page: Page, kind: str, content: dict[str, Any], seconds: float, **extra: Any
) -> tuple[float, float, Recording]:
    """Play for ``seconds`` through the tapped output, stop, listen one more second.

    Returns (start time, stop time, recording) in the context's seconds.
    """
    await call(page, "tap")
    await call(page, "load", kind, content, extra)
    await call(page, "ready")
    start = float(await call(page, "start"))
    await wait_until(page, start + seconds)
    stopped = float(await call(page, "stop"))
    await wait_until(page, stopped + 1.0)
    return start, stopped, Recording.decode(await call(page, "recording"))


async def render(page: Page, kind: str, content: dict[str, Any], seconds: float, **extra: Any) -> Recording:
    return Recording.decode(await call(page, "offline", kind, content, seconds, extra))


async def test_kicks_on_steps_0_and_8_sound_on_time_and_stop_silences(page: Page) -> None:
    start, stopped, heard = await play_live(page, "loop", kicks(0, 8), 3.3)
    # 120 bpm: a step is 0.125 s, so the kicks of a one-bar loop fall every second.
    onsets = [t - start for t in heard.onsets(end=stopped)]
    assert close_to(onsets, [0.0, 1.0, 2.0, 3.0], ONSET_TOLERANCE), onsets
    assert heard.peak(start, start + 0.2) > 0.2  # a real kick, not a click
    assert heard.peak(stopped + 0.05, stopped + 1.0) < 1e-4  # silence after Stop
    assert await call(page, "playing") is False
    assert await call(page, "errors") == []


@pytest.mark.parametrize("bpm", [120, 90])
async def test_offline_render_of_the_same_player_puts_steps_on_their_sixteenths(page: Page, bpm: int) -> None:
    heard = await render(page, "loop", kicks(0, 8, bpm=bpm), 4.5)
    step = 60 / bpm / 4
    cycle = 16 * step
    want = [n * 8 * step for n in range(0, 10) if n * 8 * step < 4.5 - 0.05]
    assert close_to(heard.onsets(), want, ONSET_TOLERANCE), (heard.onsets(), want)
    assert cycle == pytest.approx(want[2])


async def test_a_sample_step_plays_the_wav_fetched_from_its_url(page: Page, samples_origin: str) -> None:
    loop = {
        "name": "Sample",
        "length": 1,
        "bpm": 120,
        "chordProgression": [],
        "iconSequence": [{"step": 4, "soundId": "sample:beep", "velocity": 1.0}],
    }
    url = f"{samples_origin}/samples/beep.wav"
    start, stopped, heard = await play_live(page, "loop", loop, 2.3, samples={"beep": url})
    assert await call(page, "errors") == []
    onsets = [t - start for t in heard.onsets(end=stopped)]
    assert close_to(onsets, [0.5], ONSET_TOLERANCE), onsets  # step 4 at 120 bpm
    at = start + onsets[0]
    assert heard.pitch(at + 0.02, at + SAMPLE_SECONDS - 0.02) == pytest.approx(A4, rel=0.02)
    assert heard.peak(at + SAMPLE_SECONDS + 0.02, at + 1.4) < 1e-3  # the file's length, once


async def test_unknown_sounds_and_samples_without_a_file_play_the_fallback(page: Page) -> None:
    loop = {
        "name": "Fallbacks",
        "length": 1,
        "bpm": 120,
        "chordProgression": [None],  # entries that are not objects are skipped
        "iconSequence": [
            None,
            {"step": 0, "soundId": "kazoo-deluxe", "velocity": 1.0},
            {"step": 8, "soundId": "sample:never-uploaded", "velocity": 1.0},
        ],
    }
    heard = await render(page, "loop", loop, 1.9)
    assert close_to(heard.onsets(), [0.0, 1.0], ONSET_TOLERANCE), heard.onsets()
    for at in (0.0, 1.0):
        assert heard.pitch(at + 0.005, at + 0.06) == pytest.approx(C5, rel=0.02)


async def test_the_playhead_fires_once_per_step_in_time_with_the_sound(page: Page) -> None:
    start, _stopped, _heard = await play_live(page, "loop", kicks(0, 8), 2.6)
    steps = await call(page, "steps")
    assert len(steps) >= 18
    for i, position in enumerate(steps):
        assert (position["step"], position["cycle"], position["bar"]) == (i % 16, i // 16, 0)
        assert position["time"] == pytest.approx(start + i * 0.125, abs=1e-3)
        # Called on the animation frame nearest the step's sound (Tone's Draw), never early.
        assert -0.02 <= position["now"] - position["time"] <= 0.25, position
    lateness = sorted(p["now"] - p["time"] for p in steps)
    assert lateness[len(lateness) // 2] <= 0.05


async def test_a_song_plays_its_blocks_in_order_each_with_its_loop(page: Page) -> None:
    song = {
        "name": "Two blocks",
        "bpm": 240,  # a bar lasts one second
        "timeSignature": "4/4",
        "timeline": [  # listed out of order: the timeline's bars decide
            {"id": "b2", "loopId": "high", "startBar": 1, "duration": 2},
            {"id": "b1", "loopId": "low", "startBar": 0, "duration": 1},
        ],
    }
    loops = {"low": lead(60, "Low"), "high": lead(72, "High")}
    heard = await render(page, "song", song, 3.9, loops=loops)
    onsets = heard.onsets()
    assert close_to(onsets, [0.0, 1.0, 2.0, 3.0], ONSET_TOLERANCE), onsets
    pitches = [heard.pitch(t + 0.02, t + 0.2) for t in onsets]
    # low's block, then high's block playing its one-bar loop twice, then the song again
    for got, want in zip(pitches, [C4, C5, C5, C4], strict=True):
        assert got == pytest.approx(want, rel=0.02), pitches

    start, _stopped, _heard = await play_live(page, "song", song, 3.2, loops=loops)
    steps = await call(page, "steps")
    playing = [(p["step"], [(b["id"], b["step"]) for b in p["blocks"]]) for p in steps[::8]]
    assert playing[:7] == [
        (0, [("b1", 0)]),
        (8, [("b1", 8)]),
        (16, [("b2", 0)]),
        (24, [("b2", 8)]),
        (32, [("b2", 0)]),
        (40, [("b2", 8)]),
        (0, [("b1", 0)]),
    ]
    assert steps[48]["cycle"] == 1 and steps[48]["time"] == pytest.approx(start + 3.0, abs=1e-3)


async def test_a_song_without_repeat_stops_at_its_end(page: Page) -> None:
    song = {"bpm": 240, "timeline": [{"id": "only", "loopId": "kick", "startBar": 0, "duration": 1}]}
    start, stopped, heard = await play_live(
        page, "song", song, 1.6, loops={"kick": kicks(0, 8)}, repeat=False
    )
    assert await call(page, "ended") == 1
    # One bar at 240 bpm: kicks at 0 and 0.5 s, then the song is over (nothing at 1 s).
    assert close_to([t - start for t in heard.onsets()], [0.0, 0.5], ONSET_TOLERANCE), heard.onsets()
    assert stopped - start > 1.5 and heard.peak(start + 1.05, stopped) < 1e-4


async def test_update_is_heard_from_the_next_cycle(page: Page) -> None:
    await call(page, "tap")
    await call(page, "load", "loop", kicks(0), {})
    start = float(await call(page, "start"))
    await wait_until(page, start + 0.4)
    # Mid-cycle: a kick on step 8 and a faster tempo, both from the next cycle on (at 2 s).
    await call(page, "update", kicks(0, 8, bpm=240), {})
    await wait_until(page, start + 4.3)
    stopped = float(await call(page, "stop"))
    await wait_until(page, stopped + 0.5)
    heard = Recording.decode(await call(page, "recording"))
    onsets = [t - start for t in heard.onsets(end=stopped)]
    # 0: the old loop (nothing at 1.0); from 2.0 the new one, a one-second cycle at 240 bpm.
    assert close_to(onsets, [0.0, 2.0, 2.5, 3.0, 3.5, 4.0], ONSET_TOLERANCE), onsets


async def test_the_composer_fixture_plays_with_chords_on_their_beats(page: Page) -> None:
    fixture = json.loads(FIXTURE.read_text())
    loops = list(fixture["music-playground:loops"].values())
    spans = await page.evaluate(
        """async (loops) => {
            const time = await import("/static/time.js");
            const spans = (loop) => time.chordSpans(loop).map((s) => [s.chord.chord, s.start, s.end]);
            const kit = await import("/static/kit.js");
            return {
                spans: loops.map(spans),
                stepsPerBar: time.STEPS_PER_BAR,
                beat: time.STEPS_PER_BEAT,
                kit: kit.KIT_SOUND_IDS,
            };
        }""",
        loops,
    )
    # Chords sit on beats: one per bar in the 4-bar loop; the 8-bar loop's last chord lasts to its end.
    assert spans["spans"] == [
        [["C", 0, 16], ["G", 16, 32], ["Am", 32, 48], ["F", 48, 64]],
        [["Am", 0, 16], ["F", 16, 32], ["C", 32, 48], ["G", 48, 128]],
        [["Bb", 0, 8], ["F", 8, 32]],
    ]
    # The server's twin (the preview picture) reads musical time the same way.
    assert (spans["stepsPerBar"], spans["beat"]) == (timing.STEPS_PER_BAR, timing.STEPS_PER_BEAT)
    assert [[[c.name, c.start, c.end] for c in timing.chord_spans(loop)] for loop in loops] == spans["spans"]
    # Every composer sound of the fixture has a sound of its own in the kit, and a name on the pages.
    used = {step["soundId"] for loop in loops for step in loop["iconSequence"]}
    assert used <= set(spans["kit"]) == set(KIT)
    pads = await page.evaluate(
        """async (names) => {
            const pitch = await import("/static/pitch.js");
            return names.map((chord) => pitch.chordMidis(window.Tonal, { bar: 0, chord }));
        }""",
        ["C maj7", "Am", "G maj", "C/E", "F#m7b5", "Xyz"],
    )
    assert pads == [[48, 52, 55, 59], [57, 60, 64], [55, 59, 62], [40, 48, 52, 55], [54, 57, 60, 64], []]
    heard = await render(page, "loop", loops[0], 8.5)
    # The first loop's kicks (steps 0 and 4) open each 8-second cycle; its chords sound all along.
    assert heard.onsets()[0] == pytest.approx(0.0, abs=ONSET_TOLERANCE)
    assert min(heard.peak(t, t + 0.25) for t in [x * 0.25 for x in range(32)]) > 0.01
    assert not any(math.isnan(x) for x in heard.window(0, 8.5))
