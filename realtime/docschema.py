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
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from pycrdt import Doc, Map

from storage.bounds import (
    COLOR_PATTERN,
    DEFAULT_LOOP_COLOR,
    DEFAULT_SONG_BPM,
    DEFAULT_TIME_SIGNATURE,
    DEFAULT_VELOCITY,
    LOOP_LENGTHS,
    MAX_BLOCK_DURATION,
    MAX_BPM,
    MAX_CHORD_BAR,
    MAX_CHORD_CELLS,
    MAX_DURATION16,
    MAX_ENTRY_FIELDS,
    MAX_ID_LEN,
    MAX_META_KEYS,
    MAX_NAME_LEN,
    MAX_PITCH,
    MAX_ROW,
    MAX_SCHEMA_VERSION,
    MAX_SHORT_TEXT,
    MAX_SOUND_ID_LEN,
    MAX_START_BAR,
    MAX_STEP,
    MAX_STEPS,
    MAX_TIMELINE_BLOCKS,
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

__all__ = [
    "CHORDS",
    "DEFAULT_LOOP_COLOR",
    "DEFAULT_VELOCITY",
    "LOOP",
    "LOOP_FIELDS",
    "META",
    "SONG",
    "SONG_FIELDS",
    "STEPS",
    "TIMELINE",
    "CheckedContent",
    "ContentReader",
    "DocKind",
    "apply_content",
    "apply_loop_content",
    "apply_song_content",
    "check_content",
    "check_live_bounds",
    "content_to_update",
    "doc_to_content",
    "first_update",
    "loop_content_to_update",
    "loop_doc_to_content",
    "new_doc",
    "song_content_to_update",
    "song_doc_to_content",
    "step_key",
    "storable_text",
    "touched_keys",
]

log = logging.getLogger(__name__)


class DocKind(StrEnum):
    """What a collaborative document holds; also the prefix of its room name (``loop:<id>``)."""

    LOOP = "loop"
    SONG = "song"


LOOP: Final = DocKind.LOOP
SONG: Final = DocKind.SONG

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

# Bounds live in storage/bounds.py, shared with the REST input models.
# Only used to repair a document whose required scalars are missing or garbage.
DEFAULT_NAME: Final = "Untitled"
DEFAULT_LOOP_LENGTH: Final = 4

_COLOR_RE: Final = re.compile(COLOR_PATTERN)
_BAR_KEY_RE: Final = re.compile(r"0|[1-9][0-9]{0,3}")
_NOTE_RE: Final = re.compile(NOTE_PATTERN)


def new_doc() -> Doc:
    """A fresh, empty document (its roots appear on first use)."""
    return Doc()


# --------------------------------------------------------------------------- validation


class _Invalid(Exception):
    """A value does not fit the schema (internal; surfaces as ``ValueError`` or a skip)."""


def _int(value: Any, lo: int, hi: int) -> int:
    # bool is an int in Python; JSON/Yjs numbers arrive as int or (integral) float.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"expected an integer, got {_describe(value)}")
    if isinstance(value, float):
        if not value.is_integer():
            raise _Invalid(f"expected an integer, got {value!r}")
        value = int(value)
    if not lo <= value <= hi:
        raise _Invalid(f"expected an integer in [{lo}, {hi}], got {value}")
    return value


def _float(value: Any, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"expected a number, got {_describe(value)}")
    value = float(value)
    if not (math.isfinite(value) and lo <= value <= hi):
        raise _Invalid(f"expected a number in [{lo}, {hi}], got {value!r}")
    return value


def storable_text(value: str) -> str:
    """``value`` if both databases can store it. Raises ``ValueError`` (pydantic-compatible)."""
    if UNSTORABLE_TEXT.search(value):
        raise ValueError("text contains a character that cannot be stored (NUL or a lone surrogate)")
    return value


def _str(value: Any, max_len: int, min_len: int = 1) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"expected a string, got {_describe(value)}")
    if not min_len <= len(value) <= max_len:
        raise _Invalid(f"expected a string of {min_len} to {max_len} characters")
    try:
        return storable_text(value)
    except ValueError as exc:
        raise _Invalid(str(exc)) from None


def _note(value: Any) -> str:
    if not isinstance(value, str) or not _NOTE_RE.fullmatch(value):
        raise _Invalid(f"expected a note name like 'C4' or 'F#3', got {_describe(value)}")
    return value


def _color(value: Any) -> str:
    if not isinstance(value, str) or not _COLOR_RE.fullmatch(value):
        raise _Invalid(f"expected a colour #RRGGBB, got {_describe(value)}")
    return value


def _choice(value: Any, choices: tuple[Any, ...]) -> Any:
    if isinstance(value, bool):
        raise _Invalid(f"expected one of {list(choices)}, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int | str) or value not in choices:
        raise _Invalid(f"expected one of {list(choices)}, got {_describe(value)}")
    return value


def _describe(value: Any) -> str:
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

_LOOP_META: Final[dict[str, Validator]] = {
    "name": lambda v: _str(v, MAX_NAME_LEN),
    "length": lambda v: _choice(v, LOOP_LENGTHS),
    "bpm": lambda v: _int(v, MIN_BPM, MAX_BPM),
    "color": _color,
    "schemaVersion": lambda v: _int(v, MIN_SCHEMA_VERSION, MAX_SCHEMA_VERSION),
}
_LOOP_META_REQUIRED: Final = ("name", "length")
_LOOP_META_DEFAULTS: Final[dict[str, Any]] = {
    "name": DEFAULT_NAME,
    "length": DEFAULT_LOOP_LENGTH,
    "bpm": None,
    "color": DEFAULT_LOOP_COLOR,
    "schemaVersion": None,
}

_SONG_META: Final[dict[str, Validator]] = {
    "name": lambda v: _str(v, MAX_NAME_LEN),
    "bpm": lambda v: _int(v, MIN_BPM, MAX_BPM),
    "timeSignature": lambda v: _choice(v, TIME_SIGNATURES),
    "schemaVersion": lambda v: _int(v, MIN_SCHEMA_VERSION, MAX_SCHEMA_VERSION),
}
_SONG_META_REQUIRED: Final = ("name", "bpm", "timeSignature")
_SONG_META_DEFAULTS: Final[dict[str, Any]] = {
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
        raise _Invalid(f"expected an object, got {_describe(raw)}")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        validator = fields.get(key)
        if validator is None:
            if strict:
                raise _Invalid(f"unknown field {key!r}")
            continue
        if value is None and key not in required:
            continue
        try:
            out[key] = validator(value)
        except _Invalid as exc:
            if strict or key in required:
                raise _Invalid(f"{key}: {exc}") from None
    for key in required:
        if key not in out:
            raise _Invalid(f"missing required field {key!r}")
    return out


def _clean_chord(raw: Any, *, strict: bool) -> dict[str, Any]:
    return _clean_entry(raw, _CHORD_FIELDS, _CHORD_REQUIRED, strict=strict)


def _clean_step(raw: Any, *, strict: bool) -> dict[str, Any]:
    step = _clean_entry(raw, _STEP_FIELDS, _STEP_REQUIRED, strict=strict)
    step.setdefault("velocity", DEFAULT_VELOCITY)
    return step


def _clean_block(raw: Any, *, strict: bool) -> dict[str, Any]:
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


def _step_sort_key(step: Mapping[str, Any]) -> tuple[Any, ...]:
    row = step.get("row")
    pitch = step.get("pitch")
    return (
        step["step"],
        -1 if row is None else row,
        step["soundId"],
        -1 if pitch is None else pitch,
        step.get("note") or "",
    )


# --------------------------------------------------------------------------- content -> desired


def _check_fields(
    content: Mapping[str, Any],
    all_fields: frozenset[str],
    fields: Iterable[str] | None,
    ignored: frozenset[str] = frozenset(),
) -> frozenset[str]:
    if not isinstance(content, Mapping):
        raise ValueError("content must be a JSON object")
    unknown = set(content) - all_fields - ignored
    if unknown:
        raise ValueError(f"unknown content field(s): {', '.join(sorted(unknown))}")
    if fields is None:
        return all_fields
    selected = frozenset(fields)
    bad = selected - all_fields
    if bad:
        raise ValueError(f"unknown content field(s): {', '.join(sorted(bad))}")
    return selected


def _strict(where: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, turning a schema violation into a ``ValueError`` at ``where``."""
    try:
        return fn(*args, **kwargs)
    except _Invalid as exc:
        raise ValueError(f"{where}: {exc}") from None


def _desired_meta(
    content: Mapping[str, Any],
    selected: frozenset[str],
    validators: Mapping[str, Validator],
    required: Iterable[str],
    defaults: Mapping[str, Any],
) -> dict[str, Any]:
    """Meta keys to write; ``None`` means "delete the key"."""
    out: dict[str, Any] = {}
    for key, validator in validators.items():
        if key not in selected:
            continue
        value = content.get(key)
        if value is None:
            if key in required:
                raise ValueError(f"{key}: required")
            # An optional scalar with a default (loop colour) is stored explicitly.
            out[key] = defaults.get(key)
            continue
        out[key] = _strict(key, validator, value)
    return out


def _list(content: Mapping[str, Any], key: str, max_len: int) -> list[Any]:
    value = content.get(key)
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise ValueError(f"{key}: expected a list, got {_describe(value)}")
    if len(value) > max_len:
        raise ValueError(f"{key}: at most {max_len} items")
    return list(value)


def _desired_chords(content: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for i, raw in enumerate(_list(content, "chordProgression", MAX_CHORD_CELLS)):
        cell = _strict(f"chordProgression[{i}]", _clean_chord, raw, strict=True)
        key = str(cell.pop("bar"))
        if key in out:
            raise ValueError(f"chordProgression[{i}]: a second chord cell for bar {key}")
        out[key] = cell
    return out


def _desired_steps(content: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for i, raw in enumerate(_list(content, "iconSequence", MAX_STEPS)):
        step = _strict(f"iconSequence[{i}]", _clean_step, raw, strict=True)
        key = step_key(step)
        out.pop(key, None)  # same cell twice: the later one wins
        out[key] = step
    return out


def _desired_blocks(content: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for i, raw in enumerate(_list(content, "timeline", MAX_TIMELINE_BLOCKS)):
        block = _strict(f"timeline[{i}]", _clean_block, raw, strict=True)
        key = block.pop("id")
        if key in out:
            raise ValueError(f"timeline[{i}]: a second block with id {key!r}")
        out[key] = block
    return out


# --------------------------------------------------------------------------- writing


def _same(current: Any, wanted: Any) -> bool:
    """Equality that does not confuse ``True`` with ``1`` (so junk gets repaired)."""
    if isinstance(wanted, bool) or isinstance(current, bool):
        return type(current) is type(wanted) and current == wanted
    if isinstance(wanted, int | float):
        return isinstance(current, int | float) and current == wanted
    if isinstance(wanted, str):
        return isinstance(current, str) and current == wanted
    if isinstance(wanted, Mapping):
        return (
            isinstance(current, Mapping)
            and set(current) == set(wanted)
            and all(_same(current[k], wanted[k]) for k in wanted)
        )
    return False


def _root(doc: Doc, name: str) -> Map:
    return doc.get(name, type=Map)


def _write_meta(meta: Map, desired: Mapping[str, Any]) -> None:
    for key, value in desired.items():
        if value is None:
            if key in meta:
                del meta[key]
        elif not _same(meta.get(key), value):
            meta[key] = value


def _write_atomic_entries(root: Map, desired: Mapping[str, Mapping[str, Any]]) -> None:
    for key in [k for k in root.keys() if k not in desired]:
        del root[key]
    for key, value in desired.items():
        if not _same(root.get(key), value):
            root[key] = dict(value)


def _write_map_entries(root: Map, desired: Mapping[str, Mapping[str, Any]]) -> None:
    for key in [k for k in root.keys() if k not in desired]:
        del root[key]
    for key, attrs in desired.items():
        current = root.get(key)
        if not isinstance(current, Map):
            root[key] = Map(dict(attrs))
            continue
        for attr in [a for a in current.keys() if a not in attrs]:
            del current[attr]
        for attr, value in attrs.items():
            if not _same(current.get(attr), value):
                current[attr] = value


def _prepare_loop(
    content: Mapping[str, Any], fields: Iterable[str] | None
) -> tuple[frozenset[str], dict[str, Any]]:
    selected = _check_fields(content, LOOP_FIELDS, fields)
    plan: dict[str, Any] = {
        META: _desired_meta(content, selected, _LOOP_META, _LOOP_META_REQUIRED, _LOOP_META_DEFAULTS)
    }
    if "chordProgression" in selected:
        plan[CHORDS] = _desired_chords(content)
    if "iconSequence" in selected:
        plan[STEPS] = _desired_steps(content)
    return selected, plan


def _prepare_song(
    content: Mapping[str, Any], fields: Iterable[str] | None
) -> tuple[frozenset[str], dict[str, Any]]:
    selected = _check_fields(content, SONG_FIELDS, fields, ignored=SONG_COMPUTED_FIELDS)
    plan: dict[str, Any] = {
        META: _desired_meta(content, selected, _SONG_META, _SONG_META_REQUIRED, _SONG_META_DEFAULTS)
    }
    if "timeline" in selected:
        plan[TIMELINE] = _desired_blocks(content)
    return selected, plan


def _write_plan(doc: Doc, plan: Mapping[str, Any], origin: Any) -> None:
    with doc.transaction(origin=origin):
        if plan[META]:
            _write_meta(_root(doc, META), plan[META])
        if CHORDS in plan:
            _write_atomic_entries(_root(doc, CHORDS), plan[CHORDS])
        if STEPS in plan:
            _write_map_entries(_root(doc, STEPS), plan[STEPS])
        if TIMELINE in plan:
            _write_map_entries(_root(doc, TIMELINE), plan[TIMELINE])


def apply_loop_content(
    doc: Doc,
    content: Mapping[str, Any],
    *,
    fields: Iterable[str] | None = None,
    origin: Any = None,
) -> None:
    """Make the live loop ``doc`` equal ``content`` for the given top-level fields.

    ``fields=None`` means every loop field: ``content`` is then the whole content (a missing
    optional field means null / default / empty list; ``name`` and ``length`` are required).
    Otherwise only the named fields are read from ``content`` and touched in the document.

    Changes are minimal and happen in one transaction (one update, tagged with ``origin``):
    equal values are left alone, changed keys are set, removed keys deleted, so concurrent
    edits of other cells or attributes by collaborators survive the merge.

    Raises:
        ValueError: content does not fit the schema (nothing was written).
    """
    _, plan = _prepare_loop(content, fields)
    _write_plan(doc, plan, origin)


def apply_song_content(
    doc: Doc,
    content: Mapping[str, Any],
    *,
    fields: Iterable[str] | None = None,
    origin: Any = None,
) -> None:
    """The song twin of :func:`apply_loop_content` (required: ``name``, ``bpm``,
    ``timeSignature``; ``totalBars`` in ``content`` is ignored, it is computed)."""
    _, plan = _prepare_song(content, fields)
    _write_plan(doc, plan, origin)


def loop_content_to_update(content: Mapping[str, Any]) -> bytes:
    """The first update of a new loop document: ``content`` (all fields) as a Yjs update.

    Use once, when the loop is created (REST or migration); never to rebuild a live document.

    Raises:
        ValueError: content does not fit the schema.
    """
    return first_update(check_content(LOOP, content))


def song_content_to_update(content: Mapping[str, Any]) -> bytes:
    """The song twin of :func:`loop_content_to_update`."""
    return first_update(check_content(SONG, content))


@dataclass(frozen=True)
class CheckedContent:
    """Whole content that passed the strict checks (:func:`check_content`): what a new
    document's first update will hold. Checking is the cheaper half of making that update,
    so a caller can count what is valid before it pays for the documents (a migration checks
    its quota in between)."""

    kind: DocKind
    plan: Mapping[str, Any]


def check_content(kind: DocKind | str, content: Mapping[str, Any]) -> CheckedContent:
    """``content`` (all fields) checked as :func:`loop_content_to_update` checks it.

    Raises:
        ValueError: content does not fit the schema.
    """
    kind = DocKind(kind)
    prepare = _prepare_loop if kind is DocKind.LOOP else _prepare_song
    _, plan = prepare(content, None)
    return CheckedContent(kind, plan)


def first_update(checked: CheckedContent) -> bytes:
    """The first update of a new document holding ``checked``. The document is made, encoded
    and dropped in the calling thread, so this may run in a worker thread."""
    doc = new_doc()
    _write_plan(doc, checked.plan, None)
    return doc.get_update()


# --------------------------------------------------------------------------- reading


def _plain(value: Any) -> Any:
    """A map entry's value as plain Python (a nested ``Map`` becomes a shallow dict)."""
    if isinstance(value, Map):
        return dict(value.items())
    return value


def _read_meta(doc: Doc, validators: Mapping[str, Validator], defaults: Mapping[str, Any]) -> dict[str, Any]:
    meta = _root(doc, META)
    out: dict[str, Any] = {}
    for key, validator in validators.items():
        value = meta.get(key)
        try:
            out[key] = defaults[key] if value is None else validator(value)
        except _Invalid:
            out[key] = defaults[key]
    return out


def _read_entries(
    doc: Doc, name: str, clean: Callable[[str, Any], dict[str, Any]]
) -> list[tuple[str, dict[str, Any]]]:
    return _read_entries_of(name, _root(doc, name).items(), clean)


def _read_entries_of(
    name: str, items: Iterable[tuple[str, Any]], clean: Callable[[str, Any], dict[str, Any]]
) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for key, value in items:
        try:
            out.append((key, clean(key, _plain(value))))
        except _Invalid:
            continue
        except Exception:  # never let a hostile document break a read
            log.warning("skipping unreadable %s entry %r", name, key[:80], exc_info=True)
    return out


def _read_chord(key: str, value: Any) -> dict[str, Any]:
    if not _BAR_KEY_RE.fullmatch(key):
        raise _Invalid("bad bar key")
    if not isinstance(value, Mapping):
        raise _Invalid("not an object")
    return _clean_chord({**value, "bar": int(key)}, strict=False)


def _read_step(key: str, value: Any) -> dict[str, Any]:
    return _clean_step(value, strict=False)


def _read_block(key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _Invalid("not an object")
    return _clean_block({**value, "id": key}, strict=False)


def _chord_out(cell: Mapping[str, Any]) -> dict[str, Any]:
    return {k: cell[k] for k in ("bar", "chord", "roman", "root", "quality") if k in cell}


def _step_out(step: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("step", "soundId", "velocity", "note", "pitch", "row", "duration16")
    return {k: step[k] for k in keys if k in step}


def _block_out(block: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("id", "loopId", "startBar", "duration", "color")
    return {k: block[k] for k in keys if k in block}


def loop_doc_to_content(doc: Doc) -> dict[str, Any]:
    """The loop's content as canonical JSON (camelCase).

    ``{name, length, bpm, color, schemaVersion, chordProgression, iconSequence}`` with
    chord cells sorted by bar, steps sorted by (step, row, soundId, pitch, note), defaults
    filled in. Never raises on document content: invalid entries are skipped (see module
    docstring).
    """
    with doc.transaction():
        meta = _read_meta(doc, _LOOP_META, _LOOP_META_DEFAULTS)
        chords = _read_entries(doc, CHORDS, _read_chord)
        steps = _read_entries(doc, STEPS, _read_step)
    return _loop_content(meta, chords, (_step_record(key, step) for key, step in steps))


_StepRecord = tuple[str, str, tuple[Any, ...], dict[str, Any]]  # key, cell, sort key, output


def _step_record(key: str, step: dict[str, Any]) -> _StepRecord:
    return key, step_key(step), _step_sort_key(step), _step_out(step)


def _loop_content(
    meta: dict[str, Any],
    chord_entries: Iterable[tuple[str, dict[str, Any]]],
    step_records: Iterable[_StepRecord],
) -> dict[str, Any]:
    chords = sorted((c for _, c in chord_entries), key=lambda c: c["bar"])
    # Entries describing the same cell collapse; the one under its canonical key wins,
    # otherwise the one with the smallest key (deterministic on every replica).
    by_cell: dict[str, tuple[bool, str, _StepRecord]] = {}
    for record in step_records:
        key, ident = record[0], record[1]
        rank = (ident != key, key)
        best = by_cell.get(ident)
        if best is None or rank < best[:2]:
            by_cell[ident] = (*rank, record)
    steps = sorted((r for *_, r in by_cell.values()), key=lambda r: r[2])
    content = dict(meta)
    content["chordProgression"] = [_chord_out(c) for c in chords[:MAX_CHORD_CELLS]]
    content["iconSequence"] = [dict(r[3]) for r in steps[:MAX_STEPS]]
    return content


def song_doc_to_content(doc: Doc) -> dict[str, Any]:
    """The song's content as canonical JSON: ``{name, bpm, timeSignature, schemaVersion,
    timeline, totalBars}``, blocks sorted by (startBar, id), ``totalBars`` = max(startBar + duration)
    or 0. Never raises on document content."""
    with doc.transaction():
        meta = _read_meta(doc, _SONG_META, _SONG_META_DEFAULTS)
        blocks = _read_entries(doc, TIMELINE, _read_block)
    return _song_content(meta, blocks)


def _song_content(
    meta: dict[str, Any], block_entries: Iterable[tuple[str, dict[str, Any]]]
) -> dict[str, Any]:
    blocks = sorted((b for _, b in block_entries), key=lambda b: (b["startBar"], b["id"]))
    blocks = blocks[:MAX_TIMELINE_BLOCKS]
    content = dict(meta)
    content["timeline"] = [_block_out(b) for b in blocks]
    content["totalBars"] = max((b["startBar"] + b["duration"] for b in blocks), default=0)
    return content


_ENTRY_READERS: Final[dict[str, Callable[[str, Any], dict[str, Any]]]] = {
    CHORDS: _read_chord,
    STEPS: _read_step,
    TIMELINE: _read_block,
}


class ContentReader:
    """The content of one live document, re-reading only the entries changed since last time.

    Reading a whole loop at its bounds (2,048 steps, each a nested map) costs hundreds of
    milliseconds of pycrdt calls; after a small edit only the touched entries are read again
    (they are found by deep-observing each collection), and the rest comes from the cache.
    The result is what :func:`doc_to_content` returns. Call :meth:`close` to stop observing.
    """

    def __init__(self, kind: DocKind | str, doc: Doc) -> None:
        self.kind = DocKind(kind)
        self.doc = doc
        names = [name for name, _ in LIVE_COLLECTIONS[self.kind]]
        self._entries: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in names}
        self._stale: dict[str, set[str] | None] = dict.fromkeys(names)  # None: read everything
        self._step_records: dict[str, _StepRecord] = {}  # derived from the cached steps
        self._changed_steps: set[str] = set()
        self._subscriptions: list[tuple[Any, Any]] = []
        self._observe(doc)

    def _observe(self, doc: Doc) -> None:
        for name in self._entries:
            root = _root(doc, name)
            self._subscriptions.append((root, root.observe_deep(self._on_change(name))))

    def rebind(self, doc: Doc) -> None:
        """Read ``doc`` from now on: a rebuilt copy of the document being read (a refused
        change rolled back). The cache is kept: the entries a change touched since the last
        read are read again anyway, and a change that was rolled back touched no others."""
        self.close()
        self.doc = doc
        self._observe(doc)

    def _on_change(self, name: str) -> Callable[[list[Any]], None]:
        def changed(events: list[Any]) -> None:  # one parameter: pycrdt passes only the events
            stale = self._stale[name]
            if stale is not None:
                stale.update(touched_keys(events))

        return changed

    def close(self) -> None:
        for root, subscription in self._subscriptions:
            root.unobserve(subscription)
        self._subscriptions.clear()

    def content(self) -> dict[str, Any]:
        with self.doc.transaction():
            for name, entries in self._entries.items():
                stale = self._stale[name]
                root = _root(self.doc, name)
                if stale is None:
                    entries.clear()
                keys = list(root.keys()) if stale is None else stale
                read = _ENTRY_READERS[name]
                if name == STEPS:
                    if stale is None:
                        self._step_records.clear()
                    self._changed_steps.update(keys)
                for key in keys:
                    entries.pop(key, None)
                    if key in root:
                        for entry_key, entry in _read_entries_of(name, [(key, root[key])], read):
                            entries[entry_key] = entry
                self._stale[name] = set()
            if self.kind is DocKind.LOOP:
                meta = _read_meta(self.doc, _LOOP_META, _LOOP_META_DEFAULTS)
            else:
                meta = _read_meta(self.doc, _SONG_META, _SONG_META_DEFAULTS)
        if self.kind is DocKind.LOOP:
            steps = self._step_records
            for key in self._changed_steps:
                step = self._entries[STEPS].get(key)
                if step is None:
                    steps.pop(key, None)
                else:
                    steps[key] = _step_record(key, step)
            self._changed_steps = set()
            return _loop_content(meta, self._entries[CHORDS].items(), steps.values())
        return _song_content(meta, self._entries[TIMELINE].items())


def touched_keys(events: Iterable[Any]) -> set[str]:
    """The keys of a collection's entries that a deep-observed change touched."""
    keys: set[str] = set()
    for event in events:
        path = event.path
        if path:
            keys.add(str(path[0]))
        else:
            keys.update(getattr(event, "keys", {}))
    return keys


# --------------------------------------------------------------------------- live bounds

LIVE_COLLECTIONS: Final[dict[DocKind, tuple[tuple[str, int], ...]]] = {
    DocKind.LOOP: ((CHORDS, MAX_CHORD_CELLS), (STEPS, MAX_STEPS)),
    DocKind.SONG: ((TIMELINE, MAX_TIMELINE_BLOCKS),),
}


# What check_live_bounds measures, by kind: (root, most entries), ``meta`` first.
_LIVE_BOUNDS: Final = {kind: ((META, MAX_META_KEYS), *LIVE_COLLECTIONS[kind]) for kind in DocKind}


def check_live_bounds(
    kind: DocKind | str, doc: Doc, touched: Mapping[str, Iterable[str]] | None = None
) -> None:
    """Refuse a live document holding more than REST content may have.

    Live edits arrive as CRDT updates, not as JSON; this keeps them within the same bounds,
    so reads stay cheap: the number of entries of ``meta`` and of each collection, and the
    number of attributes of entries. With ``touched`` (root name -> the keys an update
    changed there), only the roots and entries it names are measured, which keeps the cost
    proportional to the update (a root grows only by keys being added); without it,
    every root is counted. Entries that are invalid in other ways are tolerated: readers
    skip them.

    Raises:
        ValueError: a collection, ``meta`` or an entry is over its bound (the message names it).
    """
    bounded = _LIVE_BOUNDS[DocKind(kind)]
    measured: list[tuple[str, int, Iterable[str]]]
    if touched is None:
        present = set(doc.keys())
        measured = [(name, bound, ()) for name, bound in bounded if name in present]
    else:  # the roots an update touched exist (listing them costs more than a check)
        measured = [(name, bound, touched[name]) for name, bound in bounded if touched.get(name)]
    if not measured:
        return
    with doc.transaction():
        for name, bound, keys in measured:
            root = _root(doc, name)
            if len(root) > bound:
                raise ValueError(f"{name}: at most {bound} entries")
            for key in keys:
                value = root.get(key)
                if isinstance(value, Map | Mapping) and len(value) > MAX_ENTRY_FIELDS:
                    raise ValueError(f"{name}: an entry may have at most {MAX_ENTRY_FIELDS} attributes")


# --------------------------------------------------------------------------- by kind


def content_to_update(kind: DocKind | str, content: Mapping[str, Any]) -> bytes:
    """:func:`loop_content_to_update` or :func:`song_content_to_update` by ``kind``: the first
    update of a new document (REST create, migration, fork, a row from before the CRDT state),
    made once."""
    return _by_kind(kind, loop_content_to_update, song_content_to_update)(content)


def apply_content(
    kind: DocKind | str,
    doc: Doc,
    content: Mapping[str, Any],
    *,
    fields: Iterable[str] | None = None,
    origin: Any = None,
) -> None:
    """:func:`apply_loop_content` or :func:`apply_song_content` by ``kind``."""
    fn = _by_kind(kind, apply_loop_content, apply_song_content)
    fn(doc, content, fields=fields, origin=origin)


def doc_to_content(kind: DocKind | str, doc: Doc) -> dict[str, Any]:
    """:func:`loop_doc_to_content` or :func:`song_doc_to_content` by ``kind``."""
    return _by_kind(kind, loop_doc_to_content, song_doc_to_content)(doc)


def _by_kind(kind: DocKind | str, loop_fn: Any, song_fn: Any) -> Any:
    kind = DocKind(kind)
    return loop_fn if kind is DocKind.LOOP else song_fn
