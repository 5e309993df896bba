"""Writing content into a loop's or song's Yjs document (the layout is :mod:`music.schema`'s).

Writing (``*_content_to_update``, ``apply_*_content``) validates strictly and raises
``ValueError`` before touching the document. Content must be in canonical form (``length``,
``step``, ``duration``; the composer's ``bars``/``bar`` aliases are normalized at the REST
edge). Steps that identify the same cell are merged (the later one wins, as toggles are
idempotent); two chord cells for one bar or two timeline blocks with one id are an error.
A write changes only what differs, so a REST write of unchanged content is no update.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pycrdt import Doc, Map

from music.bounds import (
    MAX_CHORD_CELLS,
    MAX_STEPS,
    MAX_TIMELINE_BLOCKS,
)
from music.kinds import LOOP, SONG, DocKind, by_kind
from music.positions import check_content_positions
from music.schema import (
    CHORDS,
    LOOP_FIELDS,
    LOOP_META,
    LOOP_META_DEFAULTS,
    LOOP_META_REQUIRED,
    META,
    SONG_COMPUTED_FIELDS,
    SONG_FIELDS,
    SONG_META,
    SONG_META_DEFAULTS,
    SONG_META_REQUIRED,
    STEPS,
    TIMELINE,
    Invalid,
    Validator,
    clean_block,
    clean_chord,
    clean_step,
    describe,
    new_doc,
    root_map,
    step_key,
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
    except Invalid as exc:
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
        raise ValueError(f"{key}: expected a list, got {describe(value)}")
    if len(value) > max_len:
        raise ValueError(f"{key}: at most {max_len} items")
    return list(value)


def _desired_chords(content: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for i, raw in enumerate(_list(content, "chordProgression", MAX_CHORD_CELLS)):
        cell = _strict(f"chordProgression[{i}]", clean_chord, raw, strict=True)
        key = str(cell.pop("bar"))
        if key in out:
            raise ValueError(f"chordProgression[{i}]: a second chord cell for bar {key}")
        out[key] = cell
    return out


def _desired_steps(content: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for i, raw in enumerate(_list(content, "iconSequence", MAX_STEPS)):
        step = _strict(f"iconSequence[{i}]", clean_step, raw, strict=True)
        key = step_key(step)
        out.pop(key, None)  # same cell twice: the later one wins
        out[key] = step
    return out


def _desired_blocks(content: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for i, raw in enumerate(_list(content, "timeline", MAX_TIMELINE_BLOCKS)):
        block = _strict(f"timeline[{i}]", clean_block, raw, strict=True)
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
        META: _desired_meta(content, selected, LOOP_META, LOOP_META_REQUIRED, LOOP_META_DEFAULTS)
    }
    if "chordProgression" in selected:
        plan[CHORDS] = _desired_chords(content)
    if "iconSequence" in selected:
        plan[STEPS] = _desired_steps(content)
    if fields is None:  # whole content; a partial change is checked on the document it makes
        check_content_positions(content)
    return selected, plan


def _prepare_song(
    content: Mapping[str, Any], fields: Iterable[str] | None
) -> tuple[frozenset[str], dict[str, Any]]:
    selected = _check_fields(content, SONG_FIELDS, fields, ignored=SONG_COMPUTED_FIELDS)
    plan: dict[str, Any] = {
        META: _desired_meta(content, selected, SONG_META, SONG_META_REQUIRED, SONG_META_DEFAULTS)
    }
    if "timeline" in selected:
        plan[TIMELINE] = _desired_blocks(content)
    return selected, plan


def _write_plan(doc: Doc, plan: Mapping[str, Any], origin: Any) -> None:
    with doc.transaction(origin=origin):
        if plan[META]:
            _write_meta(root_map(doc, META), plan[META])
        if CHORDS in plan:
            _write_atomic_entries(root_map(doc, CHORDS), plan[CHORDS])
        if STEPS in plan:
            _write_map_entries(root_map(doc, STEPS), plan[STEPS])
        if TIMELINE in plan:
            _write_map_entries(root_map(doc, TIMELINE), plan[TIMELINE])


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


def content_to_update(kind: DocKind | str, content: Mapping[str, Any]) -> bytes:
    """:func:`loop_content_to_update` or :func:`song_content_to_update` by ``kind``: the first
    update of a new document (REST create, migration, fork, a row from before the CRDT state),
    made once."""
    return by_kind(kind, loop_content_to_update, song_content_to_update)(content)


def apply_content(
    kind: DocKind | str,
    doc: Doc,
    content: Mapping[str, Any],
    *,
    fields: Iterable[str] | None = None,
    origin: Any = None,
) -> None:
    """:func:`apply_loop_content` or :func:`apply_song_content` by ``kind``."""
    fn = by_kind(kind, apply_loop_content, apply_song_content)
    fn(doc, content, fields=fields, origin=origin)
