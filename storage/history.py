"""The version history's tables: kept updates, versions, per-document history settings.

The update log (``document_updates``) holds every accepted update with its author until a
snapshot folds it into the document row and trims it. :func:`keep_folded` runs inside that
snapshot's transaction and copies the entries it folds into ``document_history`` first, so
compaction never loses history; the retention window (:func:`prune_before`) drops old
entries later, moving the ``base`` (the document as it was when the kept history starts)
forward. Versions hold a whole Yjs state each, so reading one or starting time travel from
one replays nothing older.
"""

from __future__ import annotations

import json
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, insert, literal_column, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from storage.database import Steps
from storage.kinds import document_model
from storage.models import (
    DocumentHistory,
    DocumentHistorySettings,
    DocumentUpdate,
    DocumentVersion,
)

HISTORY_MODELS = (DocumentHistory, DocumentVersion, DocumentHistorySettings)
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
    until: datetime | None = None,
    with_data: bool = True,
) -> list[Entry]:
    """Kept and not yet folded updates with id > ``after`` (and made at or before ``until``),
    in id order: the history and the log's tail, read as one list."""
    found: dict[int, Entry] = {}
    for model in (DocumentHistory, DocumentUpdate):
        data = model.data if with_data else literal_column("NULL")
        query = select(model.id, model.author_id, model.created_at, data).where(
            model.resource_id == resource_id, model.resource_type == resource_type, model.id > after
        )
        if until is not None:
            query = query.where(model.created_at <= until)
        for entry_id, author, created_at, payload in await session.execute(query):
            found.setdefault(int(entry_id), Entry(int(entry_id), author, created_at, bytes(payload or b"")))
    return [found[key] for key in sorted(found)]


async def list_versions(session: AsyncSession, resource_id: uuid.UUID) -> Sequence[DocumentVersion]:
    """Every version of a document, newest first, without their states."""
    return (
        await session.scalars(
            select(DocumentVersion)
            .options(defer(DocumentVersion.state), defer(DocumentVersion.content))
            .where(DocumentVersion.resource_id == resource_id)
            .order_by(DocumentVersion.created_at.desc(), DocumentVersion.position.desc())
        )
    ).all()


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
    """How many kept updates have ids in (``after``, ``up_to``] (history and log's tail)."""
    ids: set[int] = set()
    for model in (DocumentHistory, DocumentUpdate):
        ids.update(
            await session.scalars(
                select(model.id).where(
                    model.resource_id == resource_id,
                    model.resource_type == resource_type,
                    model.id > after,
                    model.id <= up_to,
                )
            )
        )
    return len(ids)


async def authors_between(
    session: AsyncSession, resource_type: str, resource_id: uuid.UUID, after: int, up_to: int
) -> list[uuid.UUID]:
    """Who made the kept updates with ids in (``after``, ``up_to``]."""
    found: set[uuid.UUID] = set()
    for model in (DocumentHistory, DocumentUpdate):
        found.update(
            author
            for author in await session.scalars(
                select(model.author_id)
                .distinct()
                .where(
                    model.resource_id == resource_id,
                    model.resource_type == resource_type,
                    model.id > after,
                    model.id <= up_to,
                    model.author_id.is_not(None),
                )
            )
            if author is not None
        )
    return sorted(found, key=str)


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
    await drop_versions_before(session, resource_id, cutoff)
    return int(cast(CursorResult[Any], dropped).rowcount)


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
                select(DocumentVersion.resource_type, DocumentVersion.resource_id)
                .distinct()
                .where(DocumentVersion.created_at < cutoff, DocumentVersion.name.is_(None))
            )
        ).all()
    )
    return [(kind, doc_id) for kind, doc_id in found]


async def delete_history(session: AsyncSession, resource_id: uuid.UUID) -> None:
    """Delete everything the history holds of a document (with the document)."""
    for model in HISTORY_MODELS:
        await session.execute(delete(model).where(model.resource_id == resource_id))
