"""Reading a loop's or song's Yjs document back as content (the layout is :mod:`music.schema`'s).

Reading (``*_doc_to_content``) never raises on content, whatever a malicious or buggy client
wrote into the document: entries that are not objects, lack a valid required attribute or
have an unparseable key are skipped; invalid optional attributes and unknown attributes are
dropped (a missing/invalid velocity reads as 0.8); scalars of the wrong type fall back to
defaults; several entries describing the same cell collapse to one; lists are cut at the size
limits. Its output therefore always satisfies the input bounds (GET -> PUT works). Also here:
what a live transaction touched, and the bounds a live edit must stay within.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from pycrdt import Doc, Map

from music.bounds import (
    MAX_CHORD_CELLS,
    MAX_ENTRY_FIELDS,
    MAX_META_KEYS,
    MAX_STEPS,
    MAX_TIMELINE_BLOCKS,
)
from music.kinds import DocKind, by_kind
from music.schema import (
    BAR_KEY_RE,
    CHORDS,
    LOOP_META,
    LOOP_META_DEFAULTS,
    META,
    SONG_META,
    SONG_META_DEFAULTS,
    STEPS,
    TIMELINE,
    Invalid,
    Validator,
    clean_block,
    clean_chord,
    clean_step,
    root_map,
    step_key,
    step_sort_key,
)

# --------------------------------------------------------------------------- reading

log = logging.getLogger(__name__)


def _plain(value: Any) -> Any:
    """A map entry's value as plain Python (a nested ``Map`` becomes a shallow dict)."""
    if isinstance(value, Map):
        return dict(value.items())
    return value


def _read_meta(doc: Doc, validators: Mapping[str, Validator], defaults: Mapping[str, Any]) -> dict[str, Any]:
    meta = root_map(doc, META)
    out: dict[str, Any] = {}
    for key, validator in validators.items():
        value = meta.get(key)
        try:
            out[key] = defaults[key] if value is None else validator(value)
        except Invalid:
            out[key] = defaults[key]
    return out


def _read_entries(
    doc: Doc, name: str, clean: Callable[[str, Any], dict[str, Any]]
) -> list[tuple[str, dict[str, Any]]]:
    return _read_entries_of(name, root_map(doc, name).items(), clean)


def _read_entries_of(
    name: str, items: Iterable[tuple[str, Any]], clean: Callable[[str, Any], dict[str, Any]]
) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for key, value in items:
        try:
            out.append((key, clean(key, _plain(value))))
        except Invalid:
            continue
        except Exception:  # never let a hostile document break a read
            log.warning("skipping unreadable %s entry %r", name, key[:80], exc_info=True)
    return out


def _read_chord(key: str, value: Any) -> dict[str, Any]:
    if not BAR_KEY_RE.fullmatch(key):
        raise Invalid("bad bar key")
    if not isinstance(value, Mapping):
        raise Invalid("not an object")
    return clean_chord({**value, "bar": int(key)}, strict=False)


def _read_step(key: str, value: Any) -> dict[str, Any]:
    return clean_step(value, strict=False)


def _read_block(key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise Invalid("not an object")
    return clean_block({**value, "id": key}, strict=False)


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
        meta = _read_meta(doc, LOOP_META, LOOP_META_DEFAULTS)
        chords = _read_entries(doc, CHORDS, _read_chord)
        steps = _read_entries(doc, STEPS, _read_step)
    return _loop_content(meta, chords, (_step_record(key, step) for key, step in steps))


_StepRecord = tuple[str, str, tuple[Any, ...], dict[str, Any]]  # key, cell, sort key, output


def _step_record(key: str, step: dict[str, Any]) -> _StepRecord:
    return key, step_key(step), step_sort_key(step), _step_out(step)


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
        meta = _read_meta(doc, SONG_META, SONG_META_DEFAULTS)
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
            root = root_map(doc, name)
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
                root = root_map(self.doc, name)
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
                meta = _read_meta(self.doc, LOOP_META, LOOP_META_DEFAULTS)
            else:
                meta = _read_meta(self.doc, SONG_META, SONG_META_DEFAULTS)
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
            root = root_map(doc, name)
            if len(root) > bound:
                raise ValueError(f"{name}: at most {bound} entries")
            for key in keys:
                value = root.get(key)
                if isinstance(value, Map | Mapping) and len(value) > MAX_ENTRY_FIELDS:
                    raise ValueError(f"{name}: an entry may have at most {MAX_ENTRY_FIELDS} attributes")


def doc_to_content(kind: DocKind | str, doc: Doc) -> dict[str, Any]:
    """:func:`loop_doc_to_content` or :func:`song_doc_to_content` by ``kind``."""
    return by_kind(kind, loop_doc_to_content, song_doc_to_content)(doc)
