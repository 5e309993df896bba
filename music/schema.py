"""The layout of loop and song content inside their collaborative (Yjs / pycrdt) documents.

The CRDT document is the single source of truth for a loop's or song's content; this module
is the only place that knows how that content is laid out in it. Client authors (the composer,
any Yjs client) must follow the same layout. All root types are ``Y.Map``s.

Loop document::

    meta   : Y.Map  name: str, length: 1|2|4|8, color: "#RRGGBB",
                    bpm?: int, schemaVersion?: int    (absent key = null)
    chords : Y.Map  key str(bar) (decimal, e.g. "4")
                    -> plain JSON object {chord, roman?, root?, quality?}
    steps  : Y.Map  key step_key(step) (see below)
                    -> Y.Map {step, soundId, velocity, row?, pitch?, note?, duration16?}

Song document::

    meta     : Y.Map  name: str, bpm: int, timeSignature: "4/4"|"3/4", schemaVersion?: int
    timeline : Y.Map  key block id -> Y.Map {loopId, startBar, duration, color?}

Units (``music.positions`` defines them, docs/musical-time.md explains them): ``length`` is
in bars of 4/4; a step's ``step`` and ``duration16`` in sixteenths (``step`` from the loop's
start); a chord's ``bar`` (its key) in **beats** from the loop's start, despite its name;
``pitch`` is a MIDI note number and ``note`` a note name ("C4" is 60); ``bpm`` beats per
minute; a block's ``startBar`` and ``duration`` bars of 16 steps.

Why this shape:

* Scalars live in one ``meta`` map, so editing the name and the tempo concurrently merges
  (last writer wins per key, never per document).
* Every collection is a map keyed by the identity of its element, never a ``Y.Array``:
  array inserts by two users are two elements, whereas two users writing the same map key is
  one element (Yjs resolves the race deterministically, the same on every replica). Hence
  toggling the same sequencer cell ON twice, concurrently, yields exactly one step; toggling
  it OFF is deleting the key, which is idempotent too. Edits to different cells touch
  different keys and never conflict.
* A step's identity is its cell: ``(step, row, soundId, tone)`` where ``tone`` is the MIDI
  ``pitch`` if present, otherwise the ``note`` name, otherwise null. So two different notes
  of the same sound at the same step (a chord on ``synth-lead``) are two steps, while the
  same note toggled twice is one. The key is the compact JSON array of those four values::

      step_key = JSON.stringify([step, row ?? null, soundId, pitch ?? note ?? null])
      e.g. '[0,2,"synth-lead",60]', '[4,null,"drum-kick",null]', '[8,null,"synth-lead","A4"]'

  (integers as integers, no spaces; ``json.dumps(..., separators=(",", ":"),
  ensure_ascii=False)`` in Python). Changing an identity field (moving a note to another
  step or pitch) is delete-old-key + set-new-key. The value repeats the identity fields so a
  client can read a step without parsing its key; readers trust the value, writers must use
  the canonical key.
* A step and a timeline block are nested ``Y.Map``s, so concurrent edits of different
  attributes (one user's velocity, another's duration; one moves a block, another recolours
  it) both survive. A chord cell, in contrast, is one atomic JSON value: its attributes are
  derived from a single chord choice, and merging ``chord`` from one user with ``roman`` from
  another would produce a cell neither of them chose.
* Defaults are written explicitly (``velocity`` 0.8, loop ``color`` #FFD11A) so every client
  sees the same value without knowing the server's defaults.

Numbers: Yjs stores every number as a float64 (pycrdt returns ``float``), so readers coerce
integral floats back to ``int``; writers may write ints or floats.

Reading (``*_doc_to_content``) never raises on content, whatever a malicious or buggy client
wrote into the document: entries that are not objects, lack a valid required attribute or
have an unparseable key are skipped; invalid optional attributes and unknown attributes are
dropped (a missing/invalid velocity reads as 0.8); scalars of the wrong type fall back to
defaults; several entries describing the same cell collapse to one; lists are cut at the size
limits. Its output therefore always satisfies the input bounds below (GET -> PUT works).
(Call it outside pycrdt observer callbacks: it may need a write transaction to type a root.)

Writing (``*_content_to_update``, ``apply_*_content``) validates strictly and raises
``ValueError`` before touching the document. Content must be in canonical form (``length``,
``step``, ``duration``; the composer's ``bars``/``bar`` aliases are normalized at the REST
edge). Steps that identify the same cell are merged (the later one wins, as toggles are
idempotent); two chord cells for one bar or two timeline blocks with one id are an error.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from pycrdt import Doc, Map

from music.bounds import (
    COLOR_PATTERN,
    DEFAULT_LOOP_COLOR,
    DEFAULT_SONG_BPM,
    DEFAULT_TIME_SIGNATURE,
    DEFAULT_VELOCITY,
    LOOP_LENGTHS,
    MAX_BLOCK_DURATION,
    MAX_BPM,
    MAX_CHORD_BAR,
    MAX_DURATION16,
    MAX_ID_LEN,
    MAX_NAME_LEN,
    MAX_PITCH,
    MAX_ROW,
    MAX_SCHEMA_VERSION,
    MAX_SHORT_TEXT,
    MAX_SOUND_ID_LEN,
    MAX_START_BAR,
    MAX_STEP,
    MAX_VELOCITY,
    MIN_BLOCK_DURATION,
    MIN_BPM,
    MIN_DURATION16,
    MIN_SCHEMA_VERSION,
    MIN_VELOCITY,
    NOTE_PATTERN,
    TIME_SIGNATURES,
    UNSTORABLE_TEXT,
)

# Root type names.
META: Final = "meta"
CHORDS: Final = "chords"
STEPS: Final = "steps"
TIMELINE: Final = "timeline"

# Content fields (camelCase, as in the REST JSON). ``totalBars`` of a song is computed.
LOOP_FIELDS: Final = frozenset(
    {"name", "length", "bpm", "color", "schemaVersion", "chordProgression", "iconSequence"}
)
SONG_FIELDS: Final = frozenset({"name", "bpm", "timeSignature", "schemaVersion", "timeline"})
SONG_COMPUTED_FIELDS: Final = frozenset({"totalBars"})

# Bounds live in music/bounds.py, shared with the REST input models.
# Only used to repair a document whose required scalars are missing or garbage.
DEFAULT_NAME: Final = "Untitled"
DEFAULT_LOOP_LENGTH: Final = 4

_COLOR_RE: Final = re.compile(COLOR_PATTERN)
BAR_KEY_RE: Final = re.compile(r"0|[1-9][0-9]{0,3}")
_NOTE_RE: Final = re.compile(NOTE_PATTERN)


def new_doc() -> Doc:
    """A fresh, empty document (its roots appear on first use)."""
    return Doc()


# --------------------------------------------------------------------------- validation


class Invalid(Exception):
    """A value does not fit the schema (internal; surfaces as ``ValueError`` or a skip)."""


def _int(value: Any, lo: int, hi: int) -> int:
    # bool is an int in Python; JSON/Yjs numbers arrive as int or (integral) float.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Invalid(f"expected an integer, got {describe(value)}")
    if isinstance(value, float):
        if not value.is_integer():
            raise Invalid(f"expected an integer, got {value!r}")
        value = int(value)
    if not lo <= value <= hi:
        raise Invalid(f"expected an integer in [{lo}, {hi}], got {value}")
    return value


def _float(value: Any, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Invalid(f"expected a number, got {describe(value)}")
    value = float(value)
    if not (math.isfinite(value) and lo <= value <= hi):
        raise Invalid(f"expected a number in [{lo}, {hi}], got {value!r}")
    return value


def storable_text(value: str) -> str:
    """``value`` if both databases can store it. Raises ``ValueError`` (pydantic-compatible)."""
    if UNSTORABLE_TEXT.search(value):
        raise ValueError("text contains a character that cannot be stored (NUL or a lone surrogate)")
    return value


def _str(value: Any, max_len: int, min_len: int = 1) -> str:
    if not isinstance(value, str):
        raise Invalid(f"expected a string, got {describe(value)}")
    if not min_len <= len(value) <= max_len:
        raise Invalid(f"expected a string of {min_len} to {max_len} characters")
    try:
        return storable_text(value)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def _note(value: Any) -> str:
    if not isinstance(value, str) or not _NOTE_RE.fullmatch(value):
        raise Invalid(f"expected a note name like 'C4' or 'F#3', got {describe(value)}")
    return value


def _color(value: Any) -> str:
    if not isinstance(value, str) or not _COLOR_RE.fullmatch(value):
        raise Invalid(f"expected a colour #RRGGBB, got {describe(value)}")
    return value


def _choice(value: Any, choices: tuple[Any, ...]) -> Any:
    if isinstance(value, bool):
        raise Invalid(f"expected one of {list(choices)}, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int | str) or value not in choices:
        raise Invalid(f"expected one of {list(choices)}, got {describe(value)}")
    return value


def describe(value: Any) -> str:
    if isinstance(value, str | int | float | bool) or value is None:
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."
    return type(value).__name__


Validator = Callable[[Any], Any]

_CHORD_FIELDS: Final[dict[str, Validator]] = {
    "bar": lambda v: _int(v, 0, MAX_CHORD_BAR),
    "chord": lambda v: _str(v, MAX_SHORT_TEXT),
    "roman": lambda v: _str(v, MAX_SHORT_TEXT),
    "root": lambda v: _str(v, MAX_SHORT_TEXT),
    "quality": lambda v: _str(v, MAX_SHORT_TEXT),
}
_CHORD_REQUIRED: Final = ("bar", "chord")

_STEP_FIELDS: Final[dict[str, Validator]] = {
    "step": lambda v: _int(v, 0, MAX_STEP),
    "soundId": lambda v: _str(v, MAX_SOUND_ID_LEN),
    "velocity": lambda v: _float(v, MIN_VELOCITY, MAX_VELOCITY),
    "note": _note,
    "pitch": lambda v: _int(v, 0, MAX_PITCH),
    "row": lambda v: _int(v, 0, MAX_ROW),
    "duration16": lambda v: _int(v, MIN_DURATION16, MAX_DURATION16),
}
_STEP_REQUIRED: Final = ("step", "soundId")

_BLOCK_FIELDS: Final[dict[str, Validator]] = {
    "id": lambda v: _str(v, MAX_ID_LEN),
    "loopId": lambda v: _str(v, MAX_ID_LEN),
    "startBar": lambda v: _int(v, 0, MAX_START_BAR),
    "duration": lambda v: _int(v, MIN_BLOCK_DURATION, MAX_BLOCK_DURATION),
    "color": _color,
}
_BLOCK_REQUIRED: Final = ("id", "loopId", "startBar", "duration")

LOOP_META: Final[dict[str, Validator]] = {
    "name": lambda v: _str(v, MAX_NAME_LEN),
    "length": lambda v: _choice(v, LOOP_LENGTHS),
    "bpm": lambda v: _int(v, MIN_BPM, MAX_BPM),
    "color": _color,
    "schemaVersion": lambda v: _int(v, MIN_SCHEMA_VERSION, MAX_SCHEMA_VERSION),
}
LOOP_META_REQUIRED: Final = ("name", "length")
LOOP_META_DEFAULTS: Final[dict[str, Any]] = {
    "name": DEFAULT_NAME,
    "length": DEFAULT_LOOP_LENGTH,
    "bpm": None,
    "color": DEFAULT_LOOP_COLOR,
    "schemaVersion": None,
}

SONG_META: Final[dict[str, Validator]] = {
    "name": lambda v: _str(v, MAX_NAME_LEN),
    "bpm": lambda v: _int(v, MIN_BPM, MAX_BPM),
    "timeSignature": lambda v: _choice(v, TIME_SIGNATURES),
    "schemaVersion": lambda v: _int(v, MIN_SCHEMA_VERSION, MAX_SCHEMA_VERSION),
}
SONG_META_REQUIRED: Final = ("name", "bpm", "timeSignature")
SONG_META_DEFAULTS: Final[dict[str, Any]] = {
    "name": DEFAULT_NAME,
    "bpm": DEFAULT_SONG_BPM,
    "timeSignature": DEFAULT_TIME_SIGNATURE,
    "schemaVersion": None,
}


def _clean_entry(
    raw: Any,
    fields: Mapping[str, Validator],
    required: Iterable[str],
    *,
    strict: bool,
) -> dict[str, Any]:
    """Validate one collection entry. An optional field set to ``None`` counts as absent.

    Strict (content from the API): any unknown or invalid field is an error. Lenient (reading
    a document): unknown and invalid optional fields are dropped, the entry is kept; only an
    invalid required field rejects the entry.
    """
    if not isinstance(raw, Mapping):
        raise Invalid(f"expected an object, got {describe(raw)}")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        validator = fields.get(key)
        if validator is None:
            if strict:
                raise Invalid(f"unknown field {key!r}")
            continue
        if value is None and key not in required:
            continue
        try:
            out[key] = validator(value)
        except Invalid as exc:
            if strict or key in required:
                raise Invalid(f"{key}: {exc}") from None
    for key in required:
        if key not in out:
            raise Invalid(f"missing required field {key!r}")
    return out


def clean_chord(raw: Any, *, strict: bool) -> dict[str, Any]:
    return _clean_entry(raw, _CHORD_FIELDS, _CHORD_REQUIRED, strict=strict)


def clean_step(raw: Any, *, strict: bool) -> dict[str, Any]:
    step = _clean_entry(raw, _STEP_FIELDS, _STEP_REQUIRED, strict=strict)
    step.setdefault("velocity", DEFAULT_VELOCITY)
    return step


def clean_block(raw: Any, *, strict: bool) -> dict[str, Any]:
    return _clean_entry(raw, _BLOCK_FIELDS, _BLOCK_REQUIRED, strict=strict)


def step_key(step: Mapping[str, Any]) -> str:
    """The ``steps`` map key of a (validated) step: the identity of its sequencer cell.

    ``JSON.stringify([step, row ?? null, soundId, pitch ?? note ?? null])`` -- see the module
    docstring. Integral floats are written as integers, as JavaScript does.
    """
    pitch = step.get("pitch")
    tone = pitch if pitch is not None else step.get("note")
    row = step.get("row")
    ident = [
        int(step["step"]),
        None if row is None else int(row),
        step["soundId"],
        int(tone) if isinstance(tone, int | float) and not isinstance(tone, bool) else tone,
    ]
    return json.dumps(ident, separators=(",", ":"), ensure_ascii=False)


def step_sort_key(step: Mapping[str, Any]) -> tuple[Any, ...]:
    row = step.get("row")
    pitch = step.get("pitch")
    return (
        step["step"],
        -1 if row is None else row,
        step["soundId"],
        -1 if pitch is None else pitch,
        step.get("note") or "",
    )


def root_map(doc: Doc, name: str) -> Map:
    return doc.get(name, type=Map)
