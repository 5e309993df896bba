"""The server-rendered pictures of the public pages: a loop's step grid and a song's timeline.

Drawn as compact inline SVG so the page shows the music before any script runs (the player
then moves the ``#playhead`` rectangle over it). Everything here is sized by the content's
bounds: a loop at its bounds (8 bars, 2,048 steps over 2,048 sounds, 32 chords: one per beat,
the most 8 bars hold) draws at most 128 columns, ``MAX_LANES`` lanes (later sounds share the
last one) and one short ``<rect>`` per step, so its page stays far under 300 KB.

Musical time is ``pages.timing``'s (the twin of ``static/time.js``): columns are sixteenths,
chords sit on beats, and positions past the loop's end are not drawn.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from html import escape
from typing import Any

from pages import timing
from pages.sounds import lane_order, sound_color, sound_label

CELL_WIDTH, CELL_HEIGHT, CELL_GAP = 14, 20, 2
PITCH_X, PITCH_Y = CELL_WIDTH + CELL_GAP, CELL_HEIGHT + CELL_GAP
CHORD_ROW = 22  # the chord names' row over the grid
MAX_LANES = 24
BAR_WIDTH = 48  # a song bar on the timeline (the timeline scrolls sideways)
BLOCK_HEIGHT = 34
MAX_TIMELINE_LANES = 8
MAX_RULER_BARS = 4096  # a song's stated totalBars drawn at most (its blocks are always drawn)


@dataclass(frozen=True)
class Lane:
    label: str
    color: str
    sound_ids: tuple[str, ...]


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def loop_lanes(loop: Mapping[str, Any], sample_names: Mapping[str, str] | None = None) -> list[Lane]:
    """One lane per sound (kit sounds first); past ``MAX_LANES`` the rest share the last."""
    steps = [s for s in loop.get("iconSequence") or [] if isinstance(s, Mapping)]
    order = lane_order({str(s.get("soundId", "")) for s in steps})
    lanes = [Lane(sound_label(sid, sample_names), _hex(sound_color(sid)), (sid,)) for sid in order]
    if len(lanes) > MAX_LANES:
        rest = lanes[MAX_LANES - 1 :]
        other = Lane(
            f"{len(rest)} other sounds", "#9a9ab0", tuple(s for lane in rest for s in lane.sound_ids)
        )
        lanes = [*lanes[: MAX_LANES - 1], other]
    return lanes


def grid_svg(loop: Mapping[str, Any], lanes: list[Lane]) -> str:
    """The loop's grid: chord names over their steps, bar and beat lines, one lane per ``lanes``
    entry with its steps (long ones as wide as their ``duration16``), and a hidden playhead."""
    columns = timing.loop_steps(loop)
    width = columns * PITCH_X + CELL_GAP
    height = CHORD_ROW + max(1, len(lanes)) * PITCH_Y + CELL_GAP
    lane_of = {sid: index for index, lane in enumerate(lanes) for sid in lane.sound_ids}
    by_lane: list[list[str]] = [[] for _ in lanes]
    for step in loop.get("iconSequence") or []:
        if not isinstance(step, Mapping) or str(step.get("soundId", "")) not in lane_of:
            continue
        at = timing.step_position(step)
        if not 0 <= at < columns:
            continue
        length = min(timing.step_duration(step), columns - at)
        extra = f' width="{length * PITCH_X - CELL_GAP}"' if length > 1 else ""
        velocity = timing.step_velocity(step)
        extra += f' fill-opacity="{0.35 + 0.65 * velocity:.2f}"' if velocity < 1 else ""
        by_lane[lane_of[str(step["soundId"])]].append(f'<rect x="{CELL_GAP + at * PITCH_X}"{extra}/>')
    parts = [
        f'<svg class="grid" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" aria-hidden="true" data-columns="{columns}" '
        f'data-lanes="{len(lanes)}">'
        f'<defs><pattern id="cell" x="{CELL_GAP}" y="{CHORD_ROW + CELL_GAP}" width="{PITCH_X}" '
        f'height="{PITCH_Y}" patternUnits="userSpaceOnUse"><rect class="empty" width="{CELL_WIDTH}" '
        f'height="{CELL_HEIGHT}"/></pattern></defs>'
        f'<rect class="bg" width="{width}" height="{height}"/>'
        f'<rect x="{CELL_GAP}" y="{CHORD_ROW + CELL_GAP}" width="{width - CELL_GAP}" '
        f'height="{height - CHORD_ROW - CELL_GAP}" fill="url(#cell)"/>'
    ]
    for span in timing.chord_spans(loop):
        x = CELL_GAP + span.start * PITCH_X
        parts.append(
            f'<g class="chord"><rect x="{x}" y="2" width="{(span.end - span.start) * PITCH_X - CELL_GAP}" '
            f'height="{CHORD_ROW - 4}" rx="3"/><text x="{x + 4}" y="{CHORD_ROW - 7}">'
            f"{escape(span.name)}</text></g>"
        )
    beats = "".join(
        f"M{column * PITCH_X + 1} {CHORD_ROW}V{height}"
        for column in range(timing.STEPS_PER_BEAT, columns, timing.STEPS_PER_BEAT)
        if column % timing.STEPS_PER_BAR
    )
    bars = "".join(
        f"M{column * PITCH_X + 1} 0V{height}"
        for column in range(timing.STEPS_PER_BAR, columns, timing.STEPS_PER_BAR)
    )
    parts.append(f'<path class="beat" d="{beats}"/><path class="bar" d="{bars}"/>')
    for index, (lane, rects) in enumerate(zip(lanes, by_lane, strict=True)):
        y = CHORD_ROW + CELL_GAP + index * PITCH_Y
        parts.append(
            f'<g class="steps" fill="{lane.color}" transform="translate(0 {y})">{"".join(rects)}</g>'
        )
    parts.append(
        f'<rect id="playhead" x="{CELL_GAP}" y="0" width="{CELL_WIDTH}" height="{height}" '
        'visibility="hidden"/>'
    )
    parts.append("</svg>")
    return "".join(parts)


def lane_labels(lanes: list[Lane]) -> str:
    """The lanes' names beside the grid, one row each (the grid's rows are the same height)."""
    items = "".join(f'<li style="--lane:{lane.color}">{escape(lane.label)}</li>' for lane in lanes)
    return f'<ul class="lanes" aria-label="sounds"><li class="chord-label">Chords</li>{items}</ul>'


def timeline_lanes(blocks: list[timing.BlockSpan]) -> list[tuple[timing.BlockSpan, int]]:
    """Each block (in start order) with the first lane where it overlaps no earlier block;
    past ``MAX_TIMELINE_LANES`` overlapping blocks share the last lane."""
    lane_ends: list[int] = []
    placed: list[tuple[timing.BlockSpan, int]] = []
    for block in blocks:
        lane = next((i for i, end in enumerate(lane_ends) if end <= block.start), len(lane_ends))
        lane = min(lane, MAX_TIMELINE_LANES - 1)
        if lane == len(lane_ends):
            lane_ends.append(block.end)
        else:
            lane_ends[lane] = max(lane_ends[lane], block.end)
        placed.append((block, lane))
    return placed


def timeline_svg(song: Mapping[str, Any], loop_names: Mapping[str, str]) -> str:
    """The song's blocks on a bar ruler, each named after its loop, overlapping blocks on lanes
    of their own (at most ``MAX_TIMELINE_LANES``: later overlaps share the last lane)."""
    blocks = timing.song_blocks(song)
    stated = song.get("totalBars")
    stated_bars = stated if isinstance(stated, int) and not isinstance(stated, bool) else 0
    total_bars = max(1, min(stated_bars, MAX_RULER_BARS), timing.song_steps(song) // timing.STEPS_PER_BAR)
    placed = timeline_lanes(blocks)
    lanes = 1 + max((lane for _, lane in placed), default=0)
    ruler = 18
    width = total_bars * BAR_WIDTH + 2
    height = ruler + lanes * (BLOCK_HEIGHT + 2) + 2
    step_width = BAR_WIDTH / timing.STEPS_PER_BAR
    parts = [
        f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" aria-hidden="true" data-total-bars="{total_bars}" '
        f'data-step-width="{step_width:g}">',
        f'<rect class="bg" width="{width}" height="{height}"/>',
    ]
    every = 1 if total_bars <= 64 else 4 if total_bars <= 256 else 16
    parts.extend(
        f'<text class="ruler" x="{bar * BAR_WIDTH + 3}" y="13">{bar + 1}</text>'
        for bar in range(0, total_bars, every)
    )
    for block, lane in placed:
        x, y = block.start * step_width + 1, ruler + lane * (BLOCK_HEIGHT + 2)
        w = max(2.0, (block.end - block.start) * step_width - 2)
        name = loop_names.get(block.loop_id) or "Loop"
        color = (
            block.color
            if block.color and len(block.color) == 7 and block.color.startswith("#")
            else "#7bdcff"
        )
        parts.append(  # a nested <svg> clips the loop's name to its block
            f'<svg class="block" data-block="{escape(block.id)}" x="{x:g}" y="{y}" width="{w:g}" '
            f'height="{BLOCK_HEIGHT}"><rect width="100%" height="100%" rx="4" fill="{escape(color)}"/>'
            f'<text x="5" y="22">{escape(name)}</text>'
            f"<title>{escape(name)}: bars {block.start // 16 + 1} to {block.end // 16}</title></svg>"
        )
    parts.append(f'<rect id="playhead" x="1" y="0" width="2" height="{height}" visibility="hidden"/>')
    parts.append("</svg>")
    return "".join(parts)
