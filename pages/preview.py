"""Link-preview pictures (``og:image``, ``twitter:image``) of shared loops and songs: PNG, 1200 x 630.

``render_preview(content, title=..., author=...)`` draws, from the content in the API's JSON shape
(the composer's field names are read too):

- a loop: its step grid with one lane per sound (labelled with the sound's name), bar lines,
  each step's length (``duration16``) as a tail, and the chords over the steps they sound for;
- a song (content with a ``timeline``): its blocks on a bar ruler, each named after its loop
  (``loop_names``: loop id -> name), overlapping blocks on lanes of their own;
- the title, "by <author>", the length and tempo, and the site's name.

Chat apps (Slack, Discord, iMessage, X) draw PNG or JPEG, not SVG, hence a raster picture.
The same input gives the same bytes: no clock, no randomness, a fixed PNG encoding; and
``preview_etag`` hashes exactly what the picture shows, so a server can answer 304 without
rendering. The cost is bounded by the content's bounds: at most 128 columns of MAX_LANES lanes,
64 chord chips, 512 blocks on MAX_TIMELINE_LANES lanes and a few lines of text.

Text uses DejaVu Sans (Debian's ``fonts-dejavu-core``, on most Debian machines) when present, else
Pillow's built-in font (ASCII only: "Zoë" is written "Zoe"); nothing is fetched at run time.
Characters the font cannot draw (emoji, scripts it lacks) are left out rather than drawn as boxes.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from music.bounds import DEFAULT_LOOP_COLOR
from pages import timing
from pages.sounds import SAMPLE_PREFIX, hue_color, lane_order, sound_color, sound_label

WIDTH, HEIGHT = 1200, 630
PREVIEW_VERSION = 1  # part of the ETag: bump it when the picture's design changes
MAX_LANES = 8  # sound lanes drawn; the rest share the last lane
MAX_TIMELINE_LANES = 6  # song lanes drawn; later overlapping blocks share the last one
SITE_NAME = "Music Playground"
SONG_COLOR = "#7BDCFF"

MARGIN = 56
LABEL_WIDTH = 150
BODY_TOP, BODY_BOTTOM = 196, 560
CHORD_ROW = 40
RULER_SIZE = 20
MIN_LABELLED_BLOCK = 40  # px: narrower song blocks carry no name

BACKGROUND = (20, 20, 31)
PANEL = (28, 28, 42)
EMPTY = (42, 42, 58)
BAR_LINE = (96, 96, 122)
TEXT = (242, 242, 247)
MUTED = (184, 184, 200)
DARK_TEXT = (20, 20, 31)
CHORD = (184, 168, 255)

DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Fonts:
    """Where the typefaces come from: TrueType files, or None for Pillow's built-in font."""

    regular: Path | None
    bold: Path | None

    @classmethod
    def system(cls) -> Fonts:
        regular, bold = DEJAVU / "DejaVuSans.ttf", DEJAVU / "DejaVuSans-Bold.ttf"
        if regular.is_file() and bold.is_file():
            return cls(regular, bold)
        return cls.builtin()

    @classmethod
    def builtin(cls) -> Fonts:
        return cls(None, None)


@functools.lru_cache(maxsize=64)
def _font(path: Path | None, size: int) -> Font:
    if path is None:
        return ImageFont.load_default(size=size)
    # The basic layout: the same glyph positions wherever the picture is drawn.
    return ImageFont.truetype(str(path), size, layout_engine=ImageFont.Layout.BASIC)


def _mask(font: Font, text: str) -> tuple[tuple[int, int], bytes]:
    mask = font.getmask(text)
    return mask.size, bytes(mask)


@functools.lru_cache(maxsize=8192)
def _drawable(path: Path | None, char: str) -> bool:
    """Whether the font has a glyph for ``char`` (else it would draw its "missing" box)."""
    if unicodedata.category(char) in {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}:
        return False
    font = _font(path, 24)
    return _mask(font, char) != _mask(font, "\U0010fffd")


def _clean(text: str, path: Path | None) -> str:
    """``text`` without what the font cannot draw; "é" becomes "e" in a font without "é"."""
    kept = []
    for char in text:
        if _drawable(path, char):
            kept.append(char)
        else:
            kept.extend(c for c in unicodedata.normalize("NFKD", char) if c != char and _drawable(path, c))
    return " ".join("".join(kept).split())


def _fit(text: str, font: Font, width: float, path: Path | None) -> str:
    """``text`` cut with an ellipsis to fit ``width`` pixels ("" when not even one letter fits)."""
    if font.getlength(text) <= width:
        return text
    ellipsis = "\u2026" if _drawable(path, "\u2026") else "..."
    low, high = 0, len(text)  # the longest prefix that fits with the ellipsis
    while low < high:
        middle = (low + high + 1) // 2
        if font.getlength(text[:middle].rstrip() + ellipsis) <= width:
            low = middle
        else:
            high = middle - 1
    return text[:low].rstrip() + ellipsis if low else ""


def _hex(value: Any, fallback: str) -> RGB:
    text = value if isinstance(value, str) else ""
    if len(text) != 7 or text[0] != "#" or any(c not in "0123456789abcdefABCDEF" for c in text[1:]):
        text = fallback
    return (int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16))


def _mix(a: RGB, b: RGB, amount: float) -> RGB:
    return (
        round(a[0] + (b[0] - a[0]) * amount),
        round(a[1] + (b[1] - a[1]) * amount),
        round(a[2] + (b[2] - a[2]) * amount),
    )


def _ink(fill: RGB) -> RGB:
    """Text colour readable on ``fill``."""
    luminance = (0.299 * fill[0] + 0.587 * fill[1] + 0.114 * fill[2]) / 255
    return DARK_TEXT if luminance > 0.55 else TEXT


def _is_song(content: Mapping[str, Any]) -> bool:
    return "timeline" in content


def _bpm_text(content: Mapping[str, Any]) -> str:
    bpm = timing.tempo(content.get("bpm"))
    return f"{bpm:g} BPM"


class _Canvas:
    """One picture being drawn, with its fonts."""

    def __init__(self, fonts: Fonts) -> None:
        self.image = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND)
        self.draw = ImageDraw.Draw(self.image)
        self.fonts = fonts

    def font(self, size: int, *, bold: bool = False) -> tuple[Font, Path | None]:
        path = self.fonts.bold if bold else self.fonts.regular
        return _font(path, size), path

    def text(
        self,
        xy: tuple[float, float],
        text: str,
        *,
        size: int,
        fill: RGB,
        width: float,
        bold: bool = False,
        anchor: str = "la",
    ) -> None:
        font, path = self.font(size, bold=bold)
        shown = _fit(_clean(text, path), font, width, path)
        if shown:
            self.draw.text(xy, shown, font=font, fill=fill, anchor=anchor)


def _header(canvas: _Canvas, content: Mapping[str, Any], title: str, author: str, facts: list[str]) -> None:
    if _is_song(content):
        first = next(iter(timing.song_blocks(content)), None)
        accent = _hex(first.color if first else None, SONG_COLOR)
    else:
        accent = _hex(content.get("color"), DEFAULT_LOOP_COLOR)
    canvas.draw.rectangle((0, 0, 11, HEIGHT), fill=accent)
    canvas.text((MARGIN, 44), title or "Untitled", size=60, fill=TEXT, width=WIDTH - 2 * MARGIN, bold=True)
    line = " \u00b7 ".join([f"by {author}" if author else "", *facts]).strip(" \u00b7")
    canvas.text((MARGIN, 124), line, size=30, fill=MUTED, width=WIDTH - 2 * MARGIN)
    canvas.text((WIDTH - MARGIN, HEIGHT - 28), SITE_NAME, size=22, fill=MUTED, width=400, anchor="rs")


def _add_cell(cells: dict[int, tuple[int, float]], at: int, duration: int, velocity: float) -> None:
    """One cell per step of a lane (several steps there: the longest, the loudest)."""
    if at in cells:
        duration, velocity = max(duration, cells[at][0]), max(velocity, cells[at][1])
    cells[at] = (duration, velocity)


def _loop_body(canvas: _Canvas, loop: Mapping[str, Any], sample_names: Mapping[str, str] | None) -> None:
    draw = canvas.draw
    columns = timing.loop_steps(loop)
    left, right = MARGIN + LABEL_WIDTH + 14, WIDTH - MARGIN
    column_width = (right - left) / columns

    def x(step: int) -> int:
        return round(left + step * column_width)

    gap = 2 if column_width >= 8 else 1
    # Steps by lane: one lane per sound, the kit's sounds first.
    steps = [s for s in loop.get("iconSequence") or [] if isinstance(s, Mapping)]
    placed: dict[str, dict[int, tuple[int, float]]] = {}  # sound -> step -> (duration, velocity)
    for step in steps:
        at, sound = timing.step_position(step), step.get("soundId")
        if isinstance(sound, str) and 0 <= at < columns:
            _add_cell(
                placed.setdefault(sound, {}), at, timing.step_duration(step), timing.step_velocity(step)
            )
    sounds = lane_order(set(placed))
    if len(sounds) > MAX_LANES:
        shown, rest = sounds[: MAX_LANES - 1], sounds[MAX_LANES - 1 :]
        lanes = [(sound_label(s, sample_names), sound_color(s), placed[s]) for s in shown]
        merged: dict[int, tuple[int, float]] = {}
        for sound in rest:
            for at, (duration, velocity) in placed[sound].items():
                _add_cell(merged, at, duration, velocity)
        lanes.append((f"+{len(rest)} more sounds", MUTED, merged))
    else:
        lanes = [(sound_label(s, sample_names), sound_color(s), placed[s]) for s in sounds]
    if not lanes:
        lanes = [("no sounds yet", MUTED, {})]

    chord_top = BODY_TOP
    lanes_top = chord_top + CHORD_ROW + 12
    lane_gap = 6
    lane_height = min(56.0, (BODY_BOTTOM - lanes_top - lane_gap * (len(lanes) - 1)) / len(lanes))
    bottom_edge = lanes_top + len(lanes) * (lane_height + lane_gap) - lane_gap
    draw.rectangle((left - 4, chord_top - 4, right + 4, bottom_edge + 4), fill=PANEL)

    # Chords over the steps they sound for.
    canvas.text(
        (MARGIN, chord_top + CHORD_ROW / 2), "Chords", size=22, fill=MUTED, width=LABEL_WIDTH, anchor="lm"
    )
    for span in timing.chord_spans(loop):
        x0, x1 = x(span.start) + 1, x(span.end) - 3
        draw.rounded_rectangle((x0, chord_top, max(x0 + 2, x1), chord_top + CHORD_ROW), radius=6, fill=CHORD)
        canvas.text(
            (x0 + 8, chord_top + CHORD_ROW / 2),
            span.name,
            size=22,
            fill=DARK_TEXT,
            width=x1 - x0 - 14,
            anchor="lm",
        )

    for index, (label, color, cells) in enumerate(lanes):
        top = lanes_top + index * (lane_height + lane_gap)
        bottom = top + lane_height
        middle = (top + bottom) / 2
        canvas.text((MARGIN, middle), label, size=22, fill=TEXT, width=LABEL_WIDTH, anchor="lm")
        for column in range(columns):
            draw.rectangle((x(column), top, x(column + 1) - gap, bottom), fill=EMPTY)
        tail_top, tail_bottom = middle - lane_height * 0.12, middle + lane_height * 0.12
        for at, (duration, velocity) in sorted(cells.items()):
            fill = _mix(EMPTY, color, 0.45 + 0.55 * velocity)
            end = min(columns, at + duration)
            if end > at + 1:
                draw.rectangle(
                    (x(at + 1) - gap, tail_top, x(end) - gap, tail_bottom), fill=_mix(EMPTY, fill, 0.7)
                )
            draw.rectangle((x(at), top, x(at + 1) - gap, bottom), fill=fill)

    # Bar lines across the chords and the lanes.
    for bar in range(1, columns // timing.STEPS_PER_BAR):
        line_x = x(bar * timing.STEPS_PER_BAR) - gap / 2 - 1
        draw.line((line_x, chord_top - 4, line_x, bottom_edge + 4), fill=BAR_LINE, width=2)


def _timeline_lanes(blocks: list[timing.BlockSpan]) -> list[tuple[timing.BlockSpan, int]]:
    """Each block with the first lane where it overlaps no earlier block (the last lane takes the rest)."""
    lane_ends: list[int] = []
    placed = []
    for block in blocks:
        lane = next((i for i, end in enumerate(lane_ends) if end <= block.start), len(lane_ends))
        if lane >= MAX_TIMELINE_LANES:
            lane = MAX_TIMELINE_LANES - 1
        if lane == len(lane_ends):
            lane_ends.append(block.end)
        else:
            lane_ends[lane] = max(lane_ends[lane], block.end)
        placed.append((block, lane))
    return placed


def _song_body(canvas: _Canvas, song: Mapping[str, Any], loop_names: Mapping[str, str]) -> None:
    draw = canvas.draw
    blocks = timing.song_blocks(song)
    total_steps = max(timing.song_steps(song), timing.STEPS_PER_BAR)
    bars = total_steps // timing.STEPS_PER_BAR
    left, right = MARGIN, WIDTH - MARGIN
    bar_width = (right - left) / bars

    def x(step: int) -> float:
        return left + step * (right - left) / total_steps

    ruler_top = BODY_TOP
    lanes_top = ruler_top + 40
    placed = _timeline_lanes(blocks)
    lanes = 1 + max((lane for _, lane in placed), default=0)
    lane_gap = 8
    lane_height = min(72.0, (BODY_BOTTOM - lanes_top - lane_gap * (lanes - 1)) / lanes)
    bottom_edge = lanes_top + lanes * (lane_height + lane_gap) - lane_gap
    draw.rectangle((left - 4, lanes_top - 4, right + 4, bottom_edge + 4), fill=PANEL)
    ruler_font, _ = canvas.font(RULER_SIZE)
    room = ruler_font.getlength(str(bars)) + 14
    every = 1  # a bar number every `every` bars (1, 2, 4, 8...: bars 1, 5, 9...), none crowded
    while every * bar_width < room:
        every *= 2
    for bar in range(0, bars, every):
        at = x(bar * timing.STEPS_PER_BAR)
        draw.line((at, ruler_top + 26, at, bottom_edge + 4), fill=BAR_LINE if bar else MUTED, width=1)
        canvas.text(
            (at + 4, ruler_top + 20), str(bar + 1), size=RULER_SIZE, fill=MUTED, width=room, anchor="ls"
        )
    for block, lane in placed:
        top = lanes_top + lane * (lane_height + lane_gap)
        x0, x1 = x(block.start) + 1, max(x(block.start) + 3, x(block.end) - 2)
        fill = _hex(block.color, "#000000") if block.color else hue_color(block.loop_id)
        draw.rounded_rectangle((x0, top, x1, top + lane_height), radius=min(6, int((x1 - x0) / 2)), fill=fill)
        if x1 - x0 >= MIN_LABELLED_BLOCK:
            name = loop_names.get(block.loop_id) or "Loop"
            canvas.text(
                (x0 + 10, top + lane_height / 2),
                name,
                size=22,
                fill=_ink(fill),
                width=x1 - x0 - 18,
                anchor="lm",
            )
    if not blocks:
        canvas.text((left + 12, lanes_top + 30), "no blocks yet", size=22, fill=MUTED, width=400, anchor="lm")


def _facts(content: Mapping[str, Any]) -> list[str]:
    if _is_song(content):
        blocks = len(timing.song_blocks(content))
        bars = max(timing.song_steps(content) // timing.STEPS_PER_BAR, 0)
        return [
            f"{bars} bar{'s' * (bars != 1)}",
            _bpm_text(content),
            f"{blocks} block{'s' * (blocks != 1)}",
        ]
    bars = timing.loop_bars(content)
    return [f"{bars}-bar loop", _bpm_text(content)]


def render_preview(
    content: Mapping[str, Any],
    *,
    title: str,
    author: str,
    loop_names: Mapping[str, str] | None = None,
    sample_names: Mapping[str, str] | None = None,
    fonts: Fonts | None = None,
) -> bytes:
    """The PNG link preview of a loop or a song (a song's content has a ``timeline``).

    ``loop_names`` names a song's loops by id (a block of an unnamed loop shows "Loop");
    ``sample_names`` names uploaded samples by id (a ``sample:<id>`` lane shows "Sample" otherwise).
    """
    canvas = _Canvas(fonts or Fonts.system())
    _header(canvas, content, title, author, _facts(content))
    if _is_song(content):
        _song_body(canvas, content, loop_names or {})
    else:
        _loop_body(canvas, content, sample_names)
    out = io.BytesIO()
    canvas.image.save(out, format="PNG", optimize=False, compress_level=6)
    return out.getvalue()


_DRAWN_FIELDS = ("length", "bars", "bpm", "color", "chordProgression", "iconSequence", "timeline")


def preview_etag(
    content: Mapping[str, Any],
    *,
    title: str,
    author: str,
    loop_names: Mapping[str, str] | None = None,
    sample_names: Mapping[str, str] | None = None,
    fonts: Fonts | None = None,
) -> str:
    """A strong ETag of the picture ``render_preview`` draws for these arguments, without drawing it.

    It covers only what the picture shows (not, say, a view count), the fonts and PREVIEW_VERSION.
    """
    chosen = fonts or Fonts.system()
    drawn = {key: content.get(key) for key in _DRAWN_FIELDS if key in content}
    if _is_song(content):
        used = {block.loop_id for block in timing.song_blocks(content)}
        names = {k: v for k, v in (loop_names or {}).items() if k in used}
    else:
        sounds = {s.get("soundId") for s in content.get("iconSequence") or [] if isinstance(s, Mapping)}
        names = {k: v for k, v in (sample_names or {}).items() if f"{SAMPLE_PREFIX}{k}" in sounds}
    shown = {
        "version": PREVIEW_VERSION,
        "fonts": [str(chosen.regular), str(chosen.bold)],
        "content": drawn,
        "title": title,
        "author": author,
        "names": names,
    }
    text = json.dumps(shown, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return '"' + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32] + '"'
