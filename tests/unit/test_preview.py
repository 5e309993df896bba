"""The PNG link preview (pages/preview.py): a real PNG of the right size that shows the content."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops

from music.bounds import MAX_CHORD_CELLS, MAX_STEP, MAX_STEPS, MAX_TIMELINE_BLOCKS
from pages import preview
from pages.preview import Fonts, preview_etag, render_preview

FIXTURE = json.loads(
    (Path(__file__).resolve().parents[1] / "fixtures" / "composer-localstorage.json").read_text()
)
LOOPS = list(FIXTURE["music-playground:loops"].values())
SONG = next(iter(FIXTURE["music-playground:songs"].values()))
LOOP_NAMES = {loop["id"]: loop["name"] for loop in LOOPS}
MAX_PNG_BYTES = 200_000


def picture(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    image.load()
    return image.convert("RGB")


def changed_area(before: bytes, after: bytes) -> tuple[int, int, int, int] | None:
    return ImageChops.difference(picture(before), picture(after)).getbbox()


def loop_png(loop: dict[str, Any], **kwargs: Any) -> bytes:
    return render_preview(loop, title=loop.get("name", ""), author="Alice", **kwargs)


def maximal_loop() -> dict[str, Any]:
    return {
        "name": "M" * 100,
        "length": 8,
        "bpm": 300,
        "chordProgression": [{"bar": i, "chord": "C#m7b5/G#" + "x" * 11} for i in range(MAX_CHORD_CELLS)],
        "iconSequence": [
            {
                "step": i % (MAX_STEP + 1),
                "soundId": f"sample:{i:04d}",
                "velocity": (i % 11) / 10,
                "row": i % 4,
                "duration16": 1 + i % 64,
            }
            for i in range(MAX_STEPS)
        ],
    }


def test_a_loop_preview_is_a_1200_by_630_png() -> None:
    png = loop_png(LOOPS[0])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert picture(png).size == (1200, 630)


def test_the_same_input_gives_the_same_bytes_and_etag() -> None:
    first = loop_png(LOOPS[0])
    again = loop_png(copy.deepcopy(LOOPS[0]))
    assert first == again
    assert preview_etag(LOOPS[0], title="t", author="a") == preview_etag(
        copy.deepcopy(LOOPS[0]), title="t", author="a"
    )


def test_one_more_step_changes_the_grid_and_only_the_grid() -> None:
    edited = copy.deepcopy(LOOPS[0])
    edited["iconSequence"].append({"bar": 20, "row": 0, "soundId": "drum-kick", "velocity": 1.0})
    before, after = loop_png(LOOPS[0]), loop_png(edited)
    area = changed_area(before, after)
    assert area is not None
    left, top, right, bottom = area
    # Step 20 is in bar 2 of 4, in the kick's lane: below the chords, right of the labels.
    grid_left = preview.MARGIN + preview.LABEL_WIDTH
    assert top > preview.BODY_TOP + preview.CHORD_ROW and bottom < preview.BODY_BOTTOM
    assert grid_left + (preview.WIDTH - grid_left) * 0.2 < left < right < preview.WIDTH / 2
    assert preview_etag(edited, title="t", author="a") != preview_etag(LOOPS[0], title="t", author="a")


def test_a_chord_shows_in_the_chord_row() -> None:
    edited = copy.deepcopy(LOOPS[0])
    edited["chordProgression"][1]["chord"] = "Em7"
    area = changed_area(loop_png(LOOPS[0]), loop_png(edited))
    assert area is not None
    _left, top, _right, bottom = area
    assert preview.BODY_TOP <= top and bottom <= preview.BODY_TOP + preview.CHORD_ROW + 1


def test_positions_outside_the_loop_are_not_drawn() -> None:
    edited = copy.deepcopy(LOOPS[2])  # 2 bars: steps 0..31, beats 0..7
    edited["iconSequence"].append({"bar": 40, "soundId": "synth-pluck"})
    edited["chordProgression"].append({"bar": 9, "chord": "C"})
    assert loop_png(edited) == loop_png(LOOPS[2])


def test_title_and_author_are_drawn() -> None:
    base = render_preview(LOOPS[0], title="Night drive", author="Alice")
    other_title = render_preview(LOOPS[0], title="Night drive 2", author="Alice")
    other_author = render_preview(LOOPS[0], title="Night drive", author="Bob")
    for changed in (other_title, other_author):
        area = changed_area(base, changed)
        assert area is not None and area[3] < preview.BODY_TOP  # in the header
    assert preview_etag(LOOPS[0], title="a", author="b") != preview_etag(LOOPS[0], title="a", author="c")


def test_the_etag_covers_what_is_drawn_only() -> None:
    counted = {**LOOPS[0], "viewCount": 12, "updatedAt": "2026-01-01T00:00:00Z"}
    assert preview_etag(counted, title="t", author="a") == preview_etag(LOOPS[0], title="t", author="a")
    unused = {"some-other-loop": "Name"}
    assert preview_etag(SONG, title="t", author="a", loop_names={**LOOP_NAMES, **unused}) == preview_etag(
        SONG, title="t", author="a", loop_names=LOOP_NAMES
    )


def test_a_song_shows_its_blocks_with_their_loop_names() -> None:
    named = render_preview(SONG, title=SONG["name"], author="Alice", loop_names=LOOP_NAMES)
    assert picture(named).size == (1200, 630)
    unnamed = render_preview(SONG, title=SONG["name"], author="Alice")
    area = changed_area(unnamed, named)
    assert area is not None and area[1] > preview.BODY_TOP  # the names are on the blocks
    moved = copy.deepcopy(SONG)
    moved["timeline"][2]["startBar"] = 16
    assert render_preview(moved, title=SONG["name"], author="Alice", loop_names=LOOP_NAMES) != named


def test_text_the_font_cannot_draw_is_left_out_not_boxed() -> None:
    plain = render_preview(LOOPS[2], title="Shoegaze", author="Zoe", fonts=Fonts.builtin())
    # Pillow's built-in font has ASCII only: the emoji goes, the accent folds.
    fancy = render_preview(LOOPS[2], title="Shoegaze \U0001f3b8", author="Zo\u00eb", fonts=Fonts.builtin())
    assert fancy == plain
    system = render_preview(LOOPS[2], title="Shoegaze \U0001f3b8 \u65e5\u672c", author="Zo\u00eb")
    assert picture(system).size == (1200, 630)


def test_unreadable_entries_are_skipped_not_fatal() -> None:
    odd = {
        "length": None,
        "bars": "four",
        "bpm": float("nan"),
        "color": "red",
        "chordProgression": [None, {"bar": "x"}, {"bar": 1.5, "chord": 7}],
        "iconSequence": [3, {"soundId": 5, "step": 1}, {"step": float("inf"), "soundId": "drum-kick"}],
    }
    assert picture(render_preview(odd, title="", author="")).size == (1200, 630)
    assert picture(render_preview({"timeline": [None, {"startBar": -4}]}, title="", author="")).size == (
        1200,
        630,
    )


def test_a_maximal_loop_and_song_render_within_the_bounds() -> None:
    loop_bytes = render_preview(maximal_loop(), title="W" * 100, author="M" * 100)
    assert picture(loop_bytes).size == (1200, 630)
    assert len(loop_bytes) <= MAX_PNG_BYTES
    song = {
        "bpm": 300,
        "timeline": [
            {"id": f"b{i}", "loopId": f"l{i % 64}", "startBar": (i * 37) % 100_000, "duration": 1 + i % 1024}
            for i in range(MAX_TIMELINE_BLOCKS)
        ],
    }
    names = {f"l{i}": "N" * 100 for i in range(64)}
    song_bytes = render_preview(song, title="W" * 100, author="M" * 100, loop_names=names)
    assert picture(song_bytes).size == (1200, 630)
    assert len(song_bytes) <= MAX_PNG_BYTES


@pytest.mark.parametrize("fonts", [Fonts.system(), Fonts.builtin()], ids=["system", "builtin"])
def test_both_font_sources_draw(fonts: Fonts) -> None:
    png = render_preview(LOOPS[0], title=LOOPS[0]["name"], author="Alice", fonts=fonts)
    assert picture(png).size == (1200, 630)
