"""The version history's tables: kept updates, versions, per-document history settings.

The update log (``document_updates``) holds every accepted update with its author until a
snapshot folds it into the document row and trims it. :func:`keep_folded` runs inside that
snapshot's transaction and copies the entries it folds into ``document_history`` first, so
compaction never loses history. Once older than ``HISTORY_PACK_AFTER_SECONDS``,
:func:`pack_kept` moves them, ``CHUNK_ENTRIES`` at a time, into one compressed row of
``document_history_chunks`` (with their ids, authors and times, 500 edits take ~3.5x fewer bytes).
Readers see the three tables as one list of entries (:func:`entries`). The retention window
(:func:`prune_before`) drops old entries later, moving the ``base`` (the document as it was
when the kept history starts) forward. Versions hold their content (and, at checkpoints, a
whole Yjs state), so reading one replays nothing and time travel replays at most
``CHECKPOINT_ENTRIES`` entries.
"""

from __future__ import annotations

import json
import struct
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, bindparam, delete, func, insert, literal_column, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.database import Database, Steps
from storage.kinds import document_model
from storage.models import (
    DocumentHistory,
    DocumentHistoryChunk,
    DocumentHistorySettings,
    DocumentUpdate,
    DocumentVersion,
)

HISTORY_MODELS = (DocumentHistory, DocumentHistoryChunk, DocumentVersion, DocumentHistorySettings)
# Kept entries packed into one compressed chunk (~3.5x fewer bytes than one row each; 500 fit
# the ~500 entries time travel replays, so it unpacks one or two chunks).
CHUNK_ENTRIES = 500
# A version keeps a whole Yjs state (a checkpoint) once this many updates were kept since the
# last checkpoint: time travel then replays at most this many (~50 ms), and a day of heavy
# editing stores a few states rather than one per version.
CHECKPOINT_ENTRIES = 500


def pack_content(content: Any) -> bytes:
    """A version's content as stored: compact JSON, zlib-compressed (~15x smaller)."""
    return zlib.compress(json.dumps(content, separators=(",", ":")).encode(), 6)


def unpack_content(packed: bytes) -> Any:
    return json.loads(zlib.decompress(packed))


def pack_state(state: bytes) -> bytes:
    """A checkpoint's Yjs state as stored, zlib-compressed (~5x smaller)."""
    return zlib.compress(state, 6)


def unpack_state(packed: bytes) -> bytes:
    return zlib.decompress(packed)


@dataclass(frozen=True)
class Entry:
    """One kept update: its log id, author (None: none recorded), time and bytes."""

    id: int
    author_id: uuid.UUID | None
    created_at: datetime
    data: bytes


# A chunk before compression: this header (entries, first id, first time in µs since the
# epoch, authors), the authors' 16 bytes each, the columns (id and time offsets, author index,
# length), then the entries' bytes.
_CHUNK_HEAD = struct.Struct("<IqqH")
_NO_AUTHOR = 0xFFFF
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _micros(when: datetime) -> int:
    return (_aware(when) - _EPOCH) // timedelta(microseconds=1)


def pack_entries(found: Sequence[Entry]) -> bytes:
    """Entries (in id order) as one compressed chunk (see ``_CHUNK_HEAD``)."""
    authors = sorted({e.author_id for e in found if e.author_id is not None}, key=str)
    index = {author: i for i, author in enumerate(authors)}
    first_id, first_at, n = found[0].id, _micros(found[0].created_at), len(found)
    parts = [
        _CHUNK_HEAD.pack(n, first_id, first_at, len(authors)),
        *(author.bytes for author in authors),
        struct.pack(f"<{n}q", *(e.id - first_id for e in found)),
        struct.pack(f"<{n}q", *(_micros(e.created_at) - first_at for e in found)),
        struct.pack(f"<{n}H", *(_NO_AUTHOR if e.author_id is None else index[e.author_id] for e in found)),
        struct.pack(f"<{n}I", *(len(e.data) for e in found)),
        *(e.data for e in found),
    ]
    return zlib.compress(b"".join(parts), 6)


def unpack_entries(packed: bytes) -> list[Entry]:
    raw = zlib.decompress(packed)
    n, first_id, first_at, author_count = _CHUNK_HEAD.unpack_from(raw)
    offset = _CHUNK_HEAD.size
    authors = [uuid.UUID(bytes=raw[offset + 16 * i : offset + 16 * (i + 1)]) for i in range(author_count)]
    offset += 16 * author_count
    ids = struct.unpack_from(f"<{n}q", raw, offset)
    times = struct.unpack_from(f"<{n}q", raw, offset + 8 * n)
    who = struct.unpack_from(f"<{n}H", raw, offset + 16 * n)
    lengths = struct.unpack_from(f"<{n}I", raw, offset + 18 * n)
    offset += 22 * n
    found = []
    for i in range(n):
        found.append(
            Entry(
                first_id + ids[i],
                None if who[i] == _NO_AUTHOR else authors[who[i]],
                _EPOCH + timedelta(microseconds=first_at + times[i]),
                raw[offset : offset + lengths[i]],
            )
        )
        offset += lengths[i]
    return found


@dataclass(frozen=True)
class Base:
    """Where replay starts: a whole state at a log position, valid from ``at``."""

    state: bytes
    position: int
    at: datetime


# --- inside the snapshot -------------------------------------------------------------------


def keep_folded(
    *,
    resource_type: str,
    resource_id: uuid.UUID,
    previous_state: bytes | None,
    previous_position: int,
    up_to: int,
) -> Steps[int]:
    """Copy the log entries a snapshot folds in (ids after the row's previous position up to
    ``up_to``) into the kept history; the first time, record the row's previous state as the
    base the history replays onto. How many entries were kept."""
    model = document_model(resource_type)
    log = DocumentUpdate
    copied = yield insert(DocumentHistory).from_select(
        ["id", "resource_type", "resource_id", "data", "created_at", "author_id"],
        select(log.id, log.resource_type, log.resource_id, log.data, log.created_at, log.author_id).where(
            log.resource_id == resource_id,
            log.resource_type == resource_type,
            log.id > previous_position,
            log.id <= up_to,
        ),
    )
    kept = int(cast(CursorResult[Any], copied).rowcount)
    if kept == 0 or previous_state is None:
        return kept
    found = yield select(DocumentHistorySettings.base_state.is_not(None)).where(
        DocumentHistorySettings.resource_id == resource_id
    )
    has_base = found.scalar_one_or_none()
    if has_base:
        return kept
    created = (yield select(model.created_at).where(model.id == resource_id)).scalar_one()
    base = {"base_state": previous_state, "base_position": previous_position, "base_at": created}
    if has_base is None:
        yield insert(DocumentHistorySettings).values(
            resource_id=resource_id, resource_type=resource_type, **base
        )
    else:
        yield (
            update(DocumentHistorySettings)
            .where(DocumentHistorySettings.resource_id == resource_id)
            .values(**base)
        )
    return kept


# --- reading -------------------------------------------------------------------------------


async def settings_of(session: AsyncSession, resource_id: uuid.UUID) -> DocumentHistorySettings | None:
    return await session.get(DocumentHistorySettings, resource_id)


async def base_of(session: AsyncSession, resource_type: str, resource_id: uuid.UUID) -> Base | None:
    """The state kept history replays onto: the recorded base, else (no history kept yet) the
    row's state as stored, valid since its last fold (or its creation). None: no document."""
    kept = await settings_of(session, resource_id)
    if kept is not None and kept.base_state is not None and kept.base_at is not None:
        return Base(kept.base_state, kept.base_position, kept.base_at)
    model = document_model(resource_type)
    row = (
        await session.execute(
            select(model.doc_state, model.doc_log_position, model.created_at, model.updated_at).where(
                model.id == resource_id
            )
        )
    ).one_or_none()
    if row is None or row.doc_state is None:
        return None
    return Base(
        row.doc_state, int(row.doc_log_position), row.updated_at if row.doc_log_position else row.created_at
    )


async def stored_state(
    session: AsyncSession, resource_type: str, resource_id: uuid.UUID
) -> tuple[bytes, int] | None:
    """The row's Yjs state and log position (None: no such document, or no state yet)."""
    model = document_model(resource_type)
    row = (
        await session.execute(select(model.doc_state, model.doc_log_position).where(model.id == resource_id))
    ).one_or_none()
    if row is None or row.doc_state is None:
        return None
    return bytes(row.doc_state), int(row.doc_log_position)


async def entries(
    session: AsyncSession,
    resource_type: str,
    resource_id: uuid.UUID,
    *,
    after: int,
    up_to: int | None = None,
    until: datetime | None = None,
    with_data: bool = True,
) -> list[Entry]:
    """Kept and not yet folded updates with id > ``after`` (and <= ``up_to``, made at or
    before ``until``), in id order: the log's tail, the entries kept one row each and the
    packed ones, read as one list. Read in the order entries move from one to the next, so
    an entry moved meanwhile is read twice (and counted once), never missed."""
    found: dict[int, Entry] = {}
    for model in (DocumentUpdate, DocumentHistory):
        data = model.data if with_data else literal_column("NULL")
        query = select(model.id, model.author_id, model.created_at, data).where(
            model.resource_id == resource_id, model.resource_type == resource_type, model.id > after
        )
        if up_to is not None:
            query = query.where(model.id <= up_to)
        if until is not None:
            query = query.where(model.created_at <= until)
        for entry_id, author, created_at, payload in await session.execute(query):
            found.setdefault(int(entry_id), Entry(int(entry_id), author, created_at, bytes(payload or b"")))
    chunk = DocumentHistoryChunk
    chunks = select(chunk.data).where(
        chunk.resource_id == resource_id, chunk.resource_type == resource_type, chunk.last_id > after
    )
    if up_to is not None:
        chunks = chunks.where(chunk.first_id <= up_to)
    if until is not None:
        chunks = chunks.where(chunk.first_at <= until)
    latest = _aware(until) if until is not None else None
    for (packed,) in await session.execute(chunks):
        for entry in unpack_entries(packed):
            if (
                entry.id > after
                and (up_to is None or entry.id <= up_to)
                and (latest is None or entry.created_at <= latest)
            ):
                found.setdefault(entry.id, entry)
    return [found[key] for key in sorted(found)]


# The versions of a document, newest first, as the listing shows them: built once, read through
# ``Database.read`` (no ORM, no transaction), as the hottest reads of the library are.
_VERSION_LIST = (
    select(
        DocumentVersion.id,
        DocumentVersion.name,
        DocumentVersion.created_at,
        DocumentVersion.created_by,
        DocumentVersion.authors,
        DocumentVersion.summary,
    )
    .where(DocumentVersion.resource_id == bindparam("resource_id"))
    .order_by(DocumentVersion.created_at.desc(), DocumentVersion.position.desc())
)


async def list_versions(db: Database, resource_id: uuid.UUID) -> list[Sequence[Any]]:
    """Every version of a document, newest first: ``(id, name, created_at, created_by,
    authors, summary)`` each (their summaries were computed when they were made)."""
    return await db.read(_VERSION_LIST, {"resource_id": resource_id})


async def get_version(
    session: AsyncSession, resource_id: uuid.UUID, version_id: uuid.UUID
) -> DocumentVersion | None:
    version = await session.get(DocumentVersion, version_id)
    return version if version is not None and version.resource_id == resource_id else None


async def newest_version(
    session: AsyncSession, resource_id: uuid.UUID, *, checkpoint: bool = False
) -> DocumentVersion | None:
    """The newest version (with ``checkpoint``: the newest holding a whole state)."""
    where = [DocumentVersion.resource_id == resource_id]
    if checkpoint:
        where.append(DocumentVersion.state.is_not(None))
    return await session.scalar(
        select(DocumentVersion)
        .where(*where)
        .order_by(DocumentVersion.position.desc(), DocumentVersion.created_at.desc())
        .limit(1)
    )


async def checkpoint_before(
    session: AsyncSession, resource_id: uuid.UUID, *, at: datetime, not_before: int
) -> DocumentVersion | None:
    """The newest checkpoint (a version holding a whole state) made at or before ``at`` whose
    position is at least ``not_before``: where time travel to ``at`` starts replaying."""
    return await session.scalar(
        select(DocumentVersion)
        .where(
            DocumentVersion.resource_id == resource_id,
            DocumentVersion.created_at <= at,
            DocumentVersion.position >= not_before,
            DocumentVersion.state.is_not(None),
        )
        .order_by(DocumentVersion.position.desc())
        .limit(1)
    )


async def count_between(
    session: AsyncSession, resource_type: str, resource_id: uuid.UUID, after: int, up_to: int
) -> int:
    """How many kept updates have ids in (``after``, ``up_to``]."""
    return len(await entries(session, resource_type, resource_id, after=after, up_to=up_to, with_data=False))


async def authors_between(
    session: AsyncSession, resource_type: str, resource_id: uuid.UUID, after: int, up_to: int
) -> list[uuid.UUID]:
    """Who made the kept updates with ids in (``after``, ``up_to``]."""
    found = await entries(session, resource_type, resource_id, after=after, up_to=up_to, with_data=False)
    return sorted({entry.author_id for entry in found if entry.author_id is not None}, key=str)


# --- writing -------------------------------------------------------------------------------


async def set_viewers_may_read(
    session: AsyncSession, resource_type: str, resource_id: uuid.UUID, allowed: bool
) -> None:
    kept = await settings_of(session, resource_id)
    if kept is None:
        session.add(
            DocumentHistorySettings(
                resource_id=resource_id,
                resource_type=resource_type,
                viewers_may_read=allowed,
                base_position=0,
            )
        )
    else:
        kept.viewers_may_read = allowed
    await session.flush()


async def trim_versions(session: AsyncSession, resource_id: uuid.UUID, *, keep: int) -> int:
    """Delete the oldest automatic versions past the newest ``keep`` (named ones are kept)."""
    kept = (
        select(DocumentVersion.id)
        .where(DocumentVersion.resource_id == resource_id, DocumentVersion.name.is_(None))
        .order_by(DocumentVersion.position.desc(), DocumentVersion.created_at.desc())
        .limit(keep)
    )
    deleted = await session.execute(
        delete(DocumentVersion).where(
            DocumentVersion.resource_id == resource_id,
            DocumentVersion.name.is_(None),
            DocumentVersion.id.not_in(kept),
        )
    )
    return int(cast(CursorResult[Any], deleted).rowcount)


async def prune_before(
    session: AsyncSession, resource_id: uuid.UUID, *, cutoff: datetime, new_base: Base
) -> int:
    """Drop kept entries up to ``new_base.position`` and automatic versions made before
    ``cutoff``; ``new_base`` (the document at that position) becomes where history starts."""
    kept = await settings_of(session, resource_id)
    assert kept is not None  # a base exists once entries were kept
    kept.base_state, kept.base_position, kept.base_at = new_base.state, new_base.position, new_base.at
    dropped = await session.execute(
        delete(DocumentHistory).where(
            DocumentHistory.resource_id == resource_id, DocumentHistory.id <= new_base.position
        )
    )
    # A chunk reaching past the new base stays (readers skip its entries up to the base) until
    # a later window passes its last entry.
    chunk = DocumentHistoryChunk
    packed = await session.scalar(
        select(func.coalesce(func.sum(chunk.entries), 0)).where(
            chunk.resource_id == resource_id, chunk.last_id <= new_base.position
        )
    )
    await session.execute(
        delete(chunk).where(chunk.resource_id == resource_id, chunk.last_id <= new_base.position)
    )
    await drop_versions_before(session, resource_id, cutoff)
    return int(cast(CursorResult[Any], dropped).rowcount) + int(packed or 0)


async def drop_versions_before(session: AsyncSession, resource_id: uuid.UUID, cutoff: datetime) -> None:
    """Delete the automatic versions made before ``cutoff`` (named ones are kept)."""
    await session.execute(
        delete(DocumentVersion).where(
            DocumentVersion.resource_id == resource_id,
            DocumentVersion.name.is_(None),
            DocumentVersion.created_at < cutoff,
        )
    )


async def documents_with_history_before(
    session: AsyncSession, cutoff: datetime
) -> list[tuple[str, uuid.UUID]]:
    """Documents holding kept entries or automatic versions older than ``cutoff`` (the sweep's work)."""
    found = set(
        (
            await session.execute(
                select(DocumentHistory.resource_type, DocumentHistory.resource_id)
                .distinct()
                .where(DocumentHistory.created_at < cutoff)
            )
        ).all()
    )
    found |= set(
        (
            await session.execute(
                select(DocumentHistoryChunk.resource_type, DocumentHistoryChunk.resource_id)
                .distinct()
                .where(DocumentHistoryChunk.first_at < cutoff)
            )
        ).all()
    )
    found |= set(
        (
            await session.execute(
                select(DocumentVersion.resource_type, DocumentVersion.resource_id)
                .distinct()
                .where(DocumentVersion.created_at < cutoff, DocumentVersion.name.is_(None))
            )
        ).all()
    )
    return [(kind, doc_id) for kind, doc_id in found]


async def pack_kept(
    session: AsyncSession, resource_type: str, resource_id: uuid.UUID, *, before: datetime, at_least: int
) -> int:
    """Move the oldest entries kept one row each that were made before ``before`` (at most
    ``CHUNK_ENTRIES``) into one compressed chunk, if at least ``at_least`` are due; how many
    moved. Each packer moves what its own DELETE removed, so two instances packing the same
    document at once never pack an entry twice."""
    due = list(
        await session.scalars(
            select(DocumentHistory.id)
            .where(DocumentHistory.resource_id == resource_id, DocumentHistory.created_at < before)
            .order_by(DocumentHistory.id)
            .limit(CHUNK_ENTRIES)
        )
    )
    if not due or len(due) < at_least:
        return 0
    removed = await session.execute(
        delete(DocumentHistory)
        .where(DocumentHistory.id.in_(due))
        .returning(
            DocumentHistory.id, DocumentHistory.author_id, DocumentHistory.created_at, DocumentHistory.data
        ),
        execution_options={"synchronize_session": False},
    )
    moved = sorted(
        (Entry(int(i), author, created_at, bytes(data)) for i, author, created_at, data in removed),
        key=lambda entry: entry.id,
    )
    if not moved:
        return 0
    session.add(
        DocumentHistoryChunk(
            resource_type=resource_type,
            resource_id=resource_id,
            first_id=moved[0].id,
            last_id=moved[-1].id,
            first_at=moved[0].created_at,
            last_at=max(entry.created_at for entry in moved),
            entries=len(moved),
            data=pack_entries(moved),
        )
    )
    await session.flush()
    return len(moved)


async def documents_with_unpacked_before(
    session: AsyncSession, before: datetime
) -> list[tuple[str, uuid.UUID]]:
    """Documents holding entries kept one row each made before ``before`` (the packer's work)."""
    rows = await session.execute(
        select(DocumentHistory.resource_type, DocumentHistory.resource_id)
        .distinct()
        .where(DocumentHistory.created_at < before)
    )
    return [(kind, doc_id) for kind, doc_id in rows.all()]


async def delete_history(session: AsyncSession, resource_id: uuid.UUID) -> None:
    """Delete everything the history holds of a document (with the document)."""
    for model in HISTORY_MODELS:
        await session.execute(delete(model).where(model.resource_id == resource_id))
