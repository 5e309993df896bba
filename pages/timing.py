"""Musical time of loops and songs, for the server side of the pages (the preview picture).

The definitions are those of ``pages/static/time.js``, which documents them; a browser test
checks that both read the composer's fixture alike. In short: a bar has 4 beats of 4 steps;
a step's position (``step``, the composer's ``bar``) counts sixteenths; a chord's ``bar``
counts beats and the chord lasts until the next one or the loop's end; positions at or past
the loop's end are not played; a timeline block spans ``duration`` (``bars``) bars of 16 steps
from ``startBar``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

STEPS_PER_BEAT = 4
BEATS_PER_BAR = 4
STEPS_PER_BAR = STEPS_PER_BEAT * BEATS_PER_BAR
DEFAULT_BPM = 120
DEFAULT_VELOCITY = 0.8
DEFAULT_DURATION16 = 1


def _whole(value: Any, fallback: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:  # NaN
        return fallback
    if value in (float("inf"), float("-inf")):
        return fallback
    return int(value // 1)


def _either(entry: Mapping[str, Any], name: str, alias: str) -> Any:
    """The seed's field, or the composer's name for it (``??`` in time.js)."""
    value = entry.get(name)
    return entry.get(alias) if value is None else value


def loop_bars(loop: Mapping[str, Any]) -> int:
    return max(1, _whole(_either(loop, "length", "bars"), 1))


def loop_steps(loop: Mapping[str, Any]) -> int:
    return loop_bars(loop) * STEPS_PER_BAR


def step_position(step: Mapping[str, Any]) -> int:
    """A step's position in sixteenths from the loop's start (-1 when it has none)."""
    return _whole(_either(step, "step", "bar"), -1)


def step_duration(step: Mapping[str, Any]) -> int:
    return max(1, _whole(step.get("duration16"), DEFAULT_DURATION16))


def step_velocity(step: Mapping[str, Any]) -> float:
    velocity = step.get("velocity")
    if isinstance(velocity, bool) or not isinstance(velocity, int | float) or velocity != velocity:
        return DEFAULT_VELOCITY
    return min(1.0, max(0.0, float(velocity)))


@dataclass(frozen=True)
class ChordSpan:
    """A chord of the progression and the steps it sounds for: ``start`` to before ``end``."""

    name: str
    start: int
    end: int


def chord_spans(loop: Mapping[str, Any]) -> list[ChordSpan]:
    """The chords of one cycle in order, each until the next or the loop's end (as time.js)."""
    cycle = loop_steps(loop)
    by_start: dict[int, str] = {}
    for cell in loop.get("chordProgression") or []:
        if not isinstance(cell, Mapping):
            continue
        start = _whole(cell.get("bar"), -1) * STEPS_PER_BEAT
        if 0 <= start < cycle:
            by_start[start] = str(cell.get("chord") or "")
    starts = sorted(by_start)
    ends = [*starts[1:], cycle][: len(starts)]  # no chords: no spans
    return [ChordSpan(by_start[s], s, e) for s, e in zip(starts, ends, strict=True)]


def tempo(bpm: Any) -> float:
    if isinstance(bpm, bool) or not isinstance(bpm, int | float) or not bpm > 0 or bpm == float("inf"):
        return DEFAULT_BPM
    return float(bpm)


@dataclass(frozen=True)
class BlockSpan:
    """A timeline block on the song's steps: ``start`` to before ``end``."""

    id: str
    loop_id: str
    start: int
    end: int
    color: str | None


def block_span(block: Mapping[str, Any]) -> BlockSpan:
    start = max(0, _whole(block.get("startBar"), 0)) * STEPS_PER_BAR
    bars = max(1, _whole(_either(block, "duration", "bars"), 1))
    color = block.get("color")
    return BlockSpan(
        id=str(block.get("id", "")),
        loop_id=str(block.get("loopId", "")),
        start=start,
        end=start + bars * STEPS_PER_BAR,
        color=color if isinstance(color, str) else None,
    )


def song_blocks(song: Mapping[str, Any]) -> list[BlockSpan]:
    """The song's blocks in the order they start (then by id), as the player plays them."""
    blocks = [block_span(b) for b in song.get("timeline") or [] if isinstance(b, Mapping)]
    return sorted(blocks, key=lambda b: (b.start, b.id))


def song_steps(song: Mapping[str, Any]) -> int:
    """The song's length in steps: the end of its last block."""
    return max((b.end for b in song_blocks(song)), default=0)
