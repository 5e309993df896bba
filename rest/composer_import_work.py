"""The CPU side of ``POST /api/migrate``, run in the worker process (``rest.cpu_worker``).

Everything here is a pure function of its arguments, which are, like its results, small or
bytes (a request body, ids, JSON text, Yjs states), so handing them between processes costs
little on the event loop. A full payload is a megabyte of JSON: parsing it, validating up to
2,000 items with REST create's models and building a CRDT document for each is seconds of
CPU, none of which may run on the event loop.

- :func:`scan` reads the body and tells which local ids it names (and which loops its songs'
  timelines name), so the handler can look up what was migrated before and charge the run
  before paying for anything else;
- :func:`build` validates the new items, refuses the run if what is valid exceeds a quota,
  remaps song timelines and makes each document's first update (once, as REST create does;
  the pycrdt ``Doc`` is made, read and dropped here).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pycrdt import Doc
from pydantic import BaseModel, ValidationError

from music.columns import content_columns
from music.positions import PositionOutOfRange
from music.reading import doc_to_content
from music.writing import CheckedContent, check_content, first_update
from rest.community_schemas import MigrateRequest
from rest.errors import validation_details, validation_error
from rest.library import LOOPS, SONGS, DocumentKind, creation_content

MAX_LOCAL_ID = 128
KINDS = (LOOPS, SONGS)
Issue = dict[str, Any]  # {local_id, kind, error, details}, as the response lists it
# Issues carry where they were found, (kind, position), so the response lists them per kind
# in payload order whichever step found them.
Placed = tuple[tuple[int, int], Issue]


@dataclass(frozen=True)
class BadBody:
    """The body as a whole is refused (400 ``validation_error``)."""

    message: str
    details: list[Any]


@dataclass(frozen=True)
class Scanned:
    """The local ids a body names, per kind plural, in payload order (only usable ones: a
    missing, overlong or repeated id is an issue instead), and the loop ids its songs'
    timelines name (as sent: they may be local ids or library UUIDs)."""

    ids: dict[str, list[str]]
    referenced: list[str]
    issues: list[Placed]


@dataclass(frozen=True)
class NewRow:
    """A document to create: its local id, new id, first Yjs update, and its other column
    values as JSON text."""

    local_id: str
    id: uuid.UUID
    doc_state: bytes
    columns: bytes


@dataclass(frozen=True)
class OverQuota:
    """What is valid exceeds a quota: nothing is built."""

    kind: str
    quota: int
    existing: int
    requested: int


@dataclass(frozen=True)
class Built:
    """A run's documents, per kind plural, and what it reports."""

    rows: dict[str, list[NewRow]]
    errors: list[Placed]  # the items that failed validation (not those :func:`scan` found)
    warnings: list[Issue]


@dataclass(frozen=True)
class _Entry:
    position: int
    local_id: str
    raw: Any


def _parse(body: bytes) -> MigrateRequest | BadBody:
    try:
        return MigrateRequest.model_validate_json(body)
    except ValidationError as exc:
        refused = validation_error(exc)
        return BadBody(refused.message, refused.details)


def _items(items: list[Any] | dict[str, Any]) -> list[tuple[Any, Any]]:
    """``(local id, raw item)``: an object's keys are the local ids, an array's items carry
    theirs in ``id``."""
    if isinstance(items, dict):
        return list(items.items())
    return [(raw.get("id") if isinstance(raw, dict) else None, raw) for raw in items]


def _issue(kind: DocumentKind, local_id: str | None, error: str, details: list[Any]) -> Issue:
    return {"local_id": local_id, "kind": kind.name, "error": error, "details": details}


def _usable(kind: DocumentKind, items: list[Any] | dict[str, Any]) -> tuple[list[_Entry], list[Placed]]:
    usable: list[_Entry] = []
    issues: list[Placed] = []
    seen: set[str] = set()
    for position, (local_id, raw) in enumerate(_items(items)):
        where = (KINDS.index(kind), position)
        if not isinstance(local_id, str) or not local_id or len(local_id) > MAX_LOCAL_ID:
            shown = local_id if isinstance(local_id, str) and local_id else None
            error = f"a {kind.name} needs an id of 1 to {MAX_LOCAL_ID} characters"
            issues.append((where, _issue(kind, shown, error, [{"index": position}])))
        elif local_id in seen:
            error = f"the id {local_id!r} appears twice in the payload"
            issues.append((where, _issue(kind, local_id, error, [{"index": position}])))
        else:
            seen.add(local_id)
            usable.append(_Entry(position, local_id, raw))
    return usable, issues


def scan(body: bytes) -> Scanned | BadBody:
    """The ids ``body`` names (cheap next to :func:`build`: nothing but the ids is checked)."""
    request = _parse(body)
    if isinstance(request, BadBody):
        return request
    ids: dict[str, list[str]] = {}
    issues: list[Placed] = []
    for kind, items in ((LOOPS, request.loops), (SONGS, request.songs)):
        usable, found = _usable(kind, items)
        ids[kind.plural] = [entry.local_id for entry in usable]
        issues += found
    referenced: set[str] = set()
    for _, raw in _items(request.songs):
        timeline = raw.get("timeline") if isinstance(raw, dict) else None
        for block in timeline if isinstance(timeline, list) else ():
            loop_id = block.get("loopId") if isinstance(block, dict) else None
            if isinstance(loop_id, str) and 0 < len(loop_id) <= MAX_LOCAL_ID:
                referenced.add(loop_id)
    return Scanned(ids, sorted(referenced), issues)


@dataclass
class _Item:
    local_id: str
    position: int
    payload: BaseModel
    content: dict[str, Any]
    checked: CheckedContent | None = None
    id: uuid.UUID = field(default_factory=uuid.uuid4)


@dataclass
class _Report:
    errors: list[Placed] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    failed_loops: set[str] = field(default_factory=set)  # local ids, for the timeline warnings

    def fail(self, kind: DocumentKind, position: int, issue: Issue) -> None:
        if kind is LOOPS and issue["local_id"] is not None:
            self.failed_loops.add(issue["local_id"])
        self.errors.append(((KINDS.index(kind), position), issue))


def _validate(kind: DocumentKind, entries: Iterable[_Entry], report: _Report) -> list[_Item]:
    """The new items that pass REST create's validation; loops also the document schema's
    (songs are checked once their timelines are remapped)."""
    valid: list[_Item] = []
    for entry in entries:
        position, local_id = entry.position, entry.local_id
        if not isinstance(entry.raw, dict):
            report.fail(kind, position, _issue(kind, local_id, f"a {kind.name} must be a JSON object", []))
            continue
        try:
            payload = kind.create.model_validate(entry.raw)
        except ValidationError as exc:
            details = validation_details(exc)
            error = f"invalid {kind.name}: {details[0]['message']}"
            report.fail(kind, position, _issue(kind, local_id, error, details))
            continue
        item = _Item(local_id, position, payload, creation_content(payload))
        if kind is LOOPS and not _check(kind, item, report):
            continue
        valid.append(item)
    return valid


def _check(kind: DocumentKind, item: _Item, report: _Report) -> bool:
    try:
        item.checked = check_content(kind.doc_kind, item.content)
    except ValueError as exc:
        details = [{"code": exc.code}] if isinstance(exc, PositionOutOfRange) else []
        report.fail(kind, item.position, _issue(kind, item.local_id, f"invalid {kind.name}: {exc}", details))
        return False
    return True


def _parse_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _remap(songs: list[_Item], loop_map: dict[str, str], library: set[str], report: _Report) -> list[_Item]:
    """Each song's timeline pointing at the new loop ids (blocks whose loop is unknown are
    left out, with a warning), then checked against the document schema."""
    valid: list[_Item] = []
    for song in songs:
        timeline, dropped = [], []
        for block in song.content["timeline"]:
            local_loop = block["loopId"]
            target = loop_map.get(local_loop)
            if target is None and (as_uuid := _parse_uuid(local_loop)) is not None:
                target = str(as_uuid) if str(as_uuid) in library else None
            if target is None:
                known = local_loop in report.failed_loops
                why = "failed to migrate" if known else "is not in the payload or your library"
                dropped.append({"blockId": block["id"], "loopId": local_loop, "reason": f"loop {why}"})
                continue
            timeline.append({**block, "loopId": target})
        song.content["timeline"] = timeline
        if not _check(SONGS, song, report):
            continue
        if dropped:
            error = f"{len(dropped)} timeline block(s) left out: their loop is unknown"
            report.warnings.append(_issue(SONGS, song.local_id, error, dropped))
        valid.append(song)
    return valid


def _row(item: _Item) -> NewRow:
    """The row of a new document, with its first CRDT update made once (as REST create)."""
    assert item.checked is not None  # every item is checked before it is built
    state = first_update(item.checked)
    doc: Doc[Any] = Doc()
    doc.apply_update(state)
    columns = content_columns(doc_to_content(item.checked.kind, doc))
    columns["is_public"] = item.payload.is_public  # type: ignore[attr-defined]
    return NewRow(item.local_id, item.id, state, json.dumps(columns, separators=(",", ":")).encode())


def build(
    body: bytes,
    *,
    fresh: dict[str, set[str]],
    loop_map: dict[str, str],
    library: set[str],
    existing: dict[str, int],
    quotas: dict[str, int],
) -> Built | OverQuota | BadBody:
    """Validate the items of ``body`` whose local ids are in ``fresh`` (per kind plural; the
    others were migrated before), and build a document for each valid one unless that
    exceeds a quota (``existing`` documents + the valid new ones > ``quotas``, per kind).

    ``loop_map`` maps the local loop ids migrated before to their documents; ``library`` is
    the set of the account's loop ids (as text) that song timelines name.
    """
    request = _parse(body)
    if isinstance(request, BadBody):
        return request
    report = _Report()
    valid: dict[str, list[_Item]] = {}
    for kind, items in ((LOOPS, request.loops), (SONGS, request.songs)):
        usable, issues = _usable(kind, items)  # the handler reports these issues (from scan)
        if kind is LOOPS:
            report.failed_loops.update(i["local_id"] for _, i in issues if i["local_id"] is not None)
        new = (entry for entry in usable if entry.local_id in fresh[kind.plural])
        valid[kind.plural] = _validate(kind, new, report)
    loop_map = {**loop_map, **{item.local_id: str(item.id) for item in valid[LOOPS.plural]}}
    valid[SONGS.plural] = _remap(valid[SONGS.plural], loop_map, library, report)
    for kind in KINDS:
        adding = len(valid[kind.plural])
        if adding and existing[kind.plural] + adding > quotas[kind.plural]:
            return OverQuota(kind.name, quotas[kind.plural], existing[kind.plural], adding)
    return Built(
        rows={plural: [_row(item) for item in items] for plural, items in valid.items()},
        errors=report.errors,
        warnings=report.warnings,
    )
