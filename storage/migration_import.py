"""Storage side of POST /api/migrate: the localStorage id mappings and the hourly limit.

The REST handler (rest/migration.py) runs one write transaction: :func:`lock_account`,
read the mappings, create what is new with :func:`insert_documents`, :func:`record_run`.
Locking the account row serializes migrations of one user (Postgres ``FOR UPDATE``;
SQLite write transactions are serialized anyway), so two identical requests sent at once
run one after the other and the second finds the first's mappings. The unique key on
``(user_id, kind, local_id)`` is the backstop.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.errors import RateLimited, Unauthorized
from storage.models import Loop, MigrationMapping, MigrationRun, Song, User, utcnow

# The seed's limit: one migration per user per hour (counting only runs that created something).
MIGRATION_WINDOW = timedelta(hours=1)


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
    """Local id -> document id, for the local ids this user already migrated."""
    if not local_ids:
        return {}
    rows = await session.execute(
        select(MigrationMapping.local_id, MigrationMapping.resource_id).where(
            MigrationMapping.user_id == user_id,
            MigrationMapping.kind == kind,
            MigrationMapping.local_id.in_(list(local_ids)),
        )
    )
    return {local_id: resource_id for local_id, resource_id in rows}


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
    """Raise RateLimited if this user already made ``per_hour`` migrations that created
    something within the last hour (``RATE_LIMIT_MIGRATIONS_PER_HOUR``). Counted from the
    database, so the limit holds across instances; retries of migrated items never count."""
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


async def insert_documents(
    session: AsyncSession,
    model: type[Loop] | type[Song],
    *,
    user_id: uuid.UUID,
    kind: str,
    documents: list[NewDocument],
) -> None:
    """Create the documents and their id mappings (in the caller's transaction)."""
    now = utcnow()
    session.add_all(
        model(id=doc.id, user_id=user_id, created_at=now, updated_at=now, **doc.values) for doc in documents
    )
    session.add_all(
        MigrationMapping(
            user_id=user_id, kind=kind, local_id=doc.local_id, resource_id=doc.id, created_at=now
        )
        for doc in documents
    )
    await session.flush()


async def record_run(session: AsyncSession, *, user_id: uuid.UUID, loops: int, songs: int) -> None:
    session.add(MigrationRun(user_id=user_id, loops_created=loops, songs_created=songs, created_at=utcnow()))
    await session.flush()
