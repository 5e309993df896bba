"""Musical time of a loop's positions, and the rule that keeps them inside the loop.

Defined once here for the server (the player's twin is ``pages/static/time.js``; users read
``docs/musical-time.md``). A loop is in 4/4: a bar has 4 beats, a beat 4 sixteenths.

- ``length``: bars (1, 2, 4 or 8), so a loop has ``length x 16`` steps and ``length x 4`` beats;
- a step's ``step``: sixteenths from the loop's start (0 <= step < length x 16);
- a step's ``duration16``: sixteenths (it may ring past the loop's end: the player cuts it);
- a chord's ``bar``: **beats** (quarter notes) from the loop's start, despite its name
  (0 <= bar < length x 4); the seed's 4-bar loops put chords at 0, 4, 8, 12;
- ``pitch``: a MIDI note number, ``note``: a note name ("C4" is 60); ``pitch`` wins.

A position at or past the loop's end is refused on every write path with the code
``position_out_of_range``: creating or replacing content (REST, the composer import: whole
content) and changing it (REST PATCH and live edits: the entries the change touches, and
every entry when it changes ``length``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from pycrdt import Doc, Map

from music.bounds import LOOP_LENGTHS
from music.schema import CHORDS, META, STEPS, root_map

STEPS_PER_BEAT: Final = 4
BEATS_PER_BAR: Final = 4
STEPS_PER_BAR: Final = STEPS_PER_BEAT * BEATS_PER_BAR
POSITION_OUT_OF_RANGE: Final = "position_out_of_range"
MAX_LISTED: Final = 8  # positions named in one error message


class PositionOutOfRange(ValueError):
    """Steps or chords at or past the loop's end."""

    code = POSITION_OUT_OF_RANGE


def _whole(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        return None
    return int(value)


def _refuse(length: int, steps: list[int], chords: list[int]) -> None:
    if not steps and not chords:
        return
    parts = []
    if steps:
        listed = ", ".join(str(s) for s in sorted(steps)[:MAX_LISTED])
        parts.append(f"steps must be below {length * STEPS_PER_BAR} (found {listed})")
    if chords:
        listed = ", ".join(str(c) for c in sorted(chords)[:MAX_LISTED])
        parts.append(f"chord beats must be below {length * BEATS_PER_BAR} (found {listed})")
    raise PositionOutOfRange(f"a {length}-bar loop: " + "; ".join(parts))


def check_content_positions(content: Mapping[str, Any]) -> None:
    """Whole loop content (the API's JSON): every step and chord inside ``length``.

    Raises:
        PositionOutOfRange: naming the first positions outside.
    """
    length = _whole(content.get("length"))
    if length is None or length not in LOOP_LENGTHS:
        return  # the schema refuses the length itself
    steps = [
        at
        for step in content.get("iconSequence") or []
        if isinstance(step, Mapping)
        and (at := _whole(step.get("step", step.get("bar")))) is not None
        and at >= length * STEPS_PER_BAR
    ]
    chords = [
        at
        for chord in content.get("chordProgression") or []
        if isinstance(chord, Mapping)
        and (at := _whole(chord.get("bar"))) is not None
        and at >= length * BEATS_PER_BAR
    ]
    _refuse(length, steps, chords)


def check_doc_positions(doc: Doc, touched: Mapping[str, Iterable[str]] | None = None) -> None:
    """A live loop document after a change: the steps and chords the change touched (all of
    them when it touched ``length``, or without ``touched``) inside the loop's ``length``.
    Entries already outside that the change did not touch are left alone (see the docs).

    Raises:
        PositionOutOfRange: naming the first positions outside.
    """
    with doc.transaction():
        length = _whole(root_map(doc, META).get("length"))
        if length is None or length not in LOOP_LENGTHS:
            return
        everything = touched is None or "length" in set(touched.get(META, ()))
        step_root, chord_root = root_map(doc, STEPS), root_map(doc, CHORDS)
        step_keys = step_root.keys() if everything else (touched or {}).get(STEPS, ())
        chord_keys = chord_root.keys() if everything else (touched or {}).get(CHORDS, ())
        steps = []
        for key in step_keys:
            entry = step_root.get(key)
            at = _whole(entry.get("step")) if isinstance(entry, Map) else None
            if at is not None and at >= length * STEPS_PER_BAR:
                steps.append(at)
        chords = [
            at
            for key in chord_keys
            if key in chord_root and (at := _int_key(key)) is not None and at >= length * BEATS_PER_BAR
        ]
    _refuse(length, steps, chords)


def _int_key(key: str) -> int | None:
    return int(key) if key.isdigit() else None
