"""Storage side of POST /api/migrate: the localStorage id mappings and the hourly limit.

The REST handler (rest/composer_import.py) runs short transactions around work done off the
event loop: :func:`lock_account` and read the mappings, then :func:`check_rate` and
:func:`charge_run` (committed before anything is validated or converted); later, in the
transaction that creates the documents, :func:`lock_account` again, :func:`insert_documents`
and :func:`finish_run`. Locking the account row serializes those transactions per user
(Postgres ``FOR UPDATE``; SQLite write transactions are serialized anyway); the unique key
on ``(user_id, kind, local_id)`` is the backstop against creating a local item twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.errors import RateLimited, Unauthorized
from storage.models import Loop, MigrationMapping, MigrationRun, Song, User, utcnow

# The seed's limit: RATE_LIMIT_MIGRATIONS_PER_HOUR runs per user per hour. What a run is and
# when it is charged: docs/community.md.
MIGRATION_WINDOW = timedelta(hours=1)
LOOKUP_SLICE = 250  # local ids per mapping lookup


@dataclass(frozen=True)
class NewDocument:
    """A document to create from a local item: its new id and its column values."""

    local_id: str
    id: uuid.UUID
    values: dict[str, Any]


async def lock_account(session: AsyncSession, user_id: uuid.UUID) -> None:
    found = await session.scalar(select(User.id).where(User.id == user_id).with_for_update())
    if found is None:
        raise Unauthorized("this account no longer exists")


async def mappings(
    session: AsyncSession, *, user_id: uuid.UUID, kind: str, local_ids: Collection[str]
) -> dict[str, uuid.UUID]:
    """Local id -> document id, for the local ids this user already migrated (asked in
    slices: a statement's parameters are rendered on the event loop)."""
    wanted = list(local_ids)
    found: dict[str, uuid.UUID] = {}
    for start in range(0, len(wanted), LOOKUP_SLICE):
        rows = await session.execute(
            select(MigrationMapping.local_id, MigrationMapping.resource_id).where(
                MigrationMapping.user_id == user_id,
                MigrationMapping.kind == kind,
                MigrationMapping.local_id.in_(wanted[start : start + LOOKUP_SLICE]),
            )
        )
        found.update((local_id, resource_id) for local_id, resource_id in rows)
    return found


async def owned_loops(
    session: AsyncSession, *, user_id: uuid.UUID, ids: Iterable[uuid.UUID]
) -> set[uuid.UUID]:
    """Which of ``ids`` are loops in this user's library."""
    wanted = list(set(ids))
    if not wanted:
        return set()
    rows = await session.scalars(select(Loop.id).where(Loop.user_id == user_id, Loop.id.in_(wanted)))
    return set(rows)


async def document_count(session: AsyncSession, model: type[Loop] | type[Song], user_id: uuid.UUID) -> int:
    return int(
        await session.scalar(select(func.count()).select_from(model).where(model.user_id == user_id)) or 0
    )


async def check_rate(
    session: AsyncSession, user_id: uuid.UUID, *, per_hour: int, now: datetime | None = None
) -> None:
    """Raise RateLimited if this user was already charged ``per_hour`` migration runs within
    the last hour (``RATE_LIMIT_MIGRATIONS_PER_HOUR``). Counted from the database, so the
    limit holds across instances; re-sending migrated items is never charged."""
    now = now or utcnow()
    recent = list(
        (
            await session.execute(
                select(MigrationRun.created_at)
                .where(MigrationRun.user_id == user_id, MigrationRun.created_at > now - MIGRATION_WINDOW)
                .order_by(MigrationRun.created_at.desc())
                .limit(per_hour)
            )
        ).scalars()
    )
    if len(recent) < per_hour:
        return
    oldest = recent[-1]
    if oldest.tzinfo is None:  # SQLite hands timestamps back without a zone; we store UTC
        oldest = oldest.replace(tzinfo=now.tzinfo)
    seconds = max(1, int((oldest + MIGRATION_WINDOW - now).total_seconds()) + 1)
    raise RateLimited(
        f"{per_hour} migration(s) per hour: new items can be migrated again in {seconds} s "
        "(re-sending items already migrated is always answered)",
        retry_after=seconds,
        details=[{"retryAfter": seconds}],
    )


async def charge_run(session: AsyncSession, *, user_id: uuid.UUID) -> uuid.UUID:
    """Count a migration run against the hourly limit, before any of its work is done; its
    outcome is written by :func:`finish_run` (a run refused later keeps zeros)."""
    run = MigrationRun(user_id=user_id, loops_created=0, songs_created=0, created_at=utcnow())
    session.add(run)
    await session.flush()
    return run.id


async def finish_run(session: AsyncSession, run_id: uuid.UUID, *, loops: int, songs: int) -> None:
    await session.execute(
        update(MigrationRun).where(MigrationRun.id == run_id).values(loops_created=loops, songs_created=songs)
    )


async def insert_documents(
    session: AsyncSession,
    model: type[Loop] | type[Song],
    *,
    user_id: uuid.UUID,
    kind: str,
    documents: list[NewDocument],
) -> None:
    """Create the documents and their id mappings (in the caller's transaction): one bulk
    INSERT per table, so the caller slices a large batch."""
    if not documents:
        return
    now = utcnow()
    owned = {"user_id": user_id, "created_at": now, "updated_at": now}
    await session.execute(insert(model), [{"id": d.id, **owned, **d.values} for d in documents])
    mapped = {"user_id": user_id, "kind": kind, "created_at": now}
    await session.execute(
        insert(MigrationMapping),
        [{"id": uuid.uuid4(), "local_id": d.local_id, "resource_id": d.id, **mapped} for d in documents],
    )
