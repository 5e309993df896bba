"""Purging anonymous accounts nobody has used for ``ANONYMOUS_RETENTION_DAYS``.

An account is purged only if it is anonymous (never linked to a sign-in identity) and its
``last_seen_at`` (written on authenticated requests and sockets, at most hourly) is older
than the cutoff. Its rows go with it through the foreign-key cascades (loops, songs,
samples, shares, refresh tokens, and whatever else references the user with
``ON DELETE CASCADE``); the update-log entries of its documents, which have no foreign key,
are deleted explicitly. Files live outside the database: ``on_purged`` is called once per
deleted account, after its transaction committed, with the storage keys of its samples.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from storage.database import Database
from storage.history import HISTORY_MODELS
from storage.models import (
    Collaborator,
    Comment,
    DocumentUpdate,
    DocumentView,
    Loop,
    Sample,
    SharedLink,
    Song,
    User,
    utcnow,
)

log = logging.getLogger(__name__)

# Postgres advisory-lock key: one instance purges at a time (SQLite is single-instance).
PURGE_LOCK_KEY = 0x6D70_7075_7267  # "mppurg"


@dataclass(frozen=True)
class PurgedAccount:
    """An anonymous account that was (or, on a dry run, would be) deleted."""

    user_id: uuid.UUID
    created_at: datetime
    last_seen_at: datetime
    loops: int
    songs: int
    samples: int
    sample_storage_keys: tuple[str, ...]
    loop_ids: tuple[uuid.UUID, ...]
    song_ids: tuple[uuid.UUID, ...]


PurgeHook = Callable[[PurgedAccount], Awaitable[None]]


def _is_purgeable(cutoff: datetime) -> list[ColumnElement[bool]]:
    return [User.is_anonymous.is_(True), User.firebase_uid.is_(None), User.last_seen_at < cutoff]


async def _describe(session: AsyncSession, user: User) -> PurgedAccount:
    loops = tuple((await session.scalars(select(Loop.id).where(Loop.user_id == user.id))).all())
    songs = tuple((await session.scalars(select(Song.id).where(Song.user_id == user.id))).all())
    keys = (await session.scalars(select(Sample.storage_key).where(Sample.user_id == user.id))).all()
    return PurgedAccount(
        user_id=user.id,
        created_at=user.created_at,
        last_seen_at=user.last_seen_at,
        loops=len(loops),
        songs=len(songs),
        samples=len(keys),
        sample_storage_keys=tuple(keys),
        loop_ids=loops,
        song_ids=songs,
    )


async def _purge_one(session: AsyncSession, user_id: uuid.UUID, cutoff: datetime) -> PurgedAccount | None:
    """Delete one account if it is still purgeable (it may have come back meanwhile)."""
    user = (
        await session.execute(
            select(User).where(User.id == user_id, *_is_purgeable(cutoff)).with_for_update()
        )
    ).scalar_one_or_none()
    if user is None:
        return None
    account = await _describe(session, user)
    documents = [*account.loop_ids, *account.song_ids]
    if documents:
        await session.execute(delete(DocumentUpdate).where(DocumentUpdate.resource_id.in_(documents)))
        # Rows that name a loop or song without a foreign key (either table) go explicitly.
        for model in (SharedLink, Collaborator, Comment, DocumentView, *HISTORY_MODELS):
            await session.execute(delete(model).where(model.resource_id.in_(documents)))
    await session.execute(delete(User).where(User.id == user_id))
    return account


async def purge_anonymous_accounts(
    db: Database,
    *,
    inactive_days: int,
    dry_run: bool = False,
    on_purged: PurgeHook | None = None,
    batch_size: int = 200,
    now: datetime | None = None,
) -> list[PurgedAccount]:
    """Delete (or, with ``dry_run``, only list) anonymous accounts inactive for ``inactive_days``.

    Each account goes in its own transaction, so a long purge never holds a big lock and a
    failure leaves every account either whole or gone. ``on_purged`` runs after each commit.
    """
    if inactive_days < 1:
        raise ValueError("inactive_days must be >= 1")
    cutoff = (now or utcnow()) - timedelta(days=inactive_days)
    purged: list[PurgedAccount] = []
    after: uuid.UUID | None = None
    while True:
        async with db.session() as session:
            query = select(User).where(*_is_purgeable(cutoff)).order_by(User.id).limit(batch_size)
            if after is not None:
                query = query.where(User.id > after)
            users = list((await session.scalars(query)).all())
            if dry_run:
                purged.extend([await _describe(session, user) for user in users])
        if not users:
            return purged
        after = users[-1].id
        if dry_run:
            continue
        for user in users:
            async with db.write_session() as session:
                account = await _purge_one(session, user.id, cutoff)
            if account is None:
                continue
            purged.append(account)
            log.info(
                "purged anonymous account %s (last seen %s): %d loops, %d songs, %d samples",
                account.user_id,
                account.last_seen_at.date(),
                account.loops,
                account.songs,
                account.samples,
            )
            if on_purged is not None:
                await on_purged(account)


async def purge_with_lock(
    db: Database,
    *,
    inactive_days: int,
    on_purged: PurgeHook | None = None,
) -> list[PurgedAccount] | None:
    """:func:`purge_anonymous_accounts` on one instance at a time: on Postgres under a
    session advisory lock (None if another instance holds it); SQLite has one instance."""
    if db.dialect != "postgresql":
        return await purge_anonymous_accounts(db, inactive_days=inactive_days, on_purged=on_purged)
    async with db.engine.connect() as conn:
        locked = await conn.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": PURGE_LOCK_KEY})
        await conn.commit()
        if not locked:
            return None
        try:
            return await purge_anonymous_accounts(db, inactive_days=inactive_days, on_purged=on_purged)
        finally:
            await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": PURGE_LOCK_KEY})
            await conn.commit()


class DailyPurge:
    """Runs the purge once a day inside the server: ``async with DailyPurge(db, ...):``.

    The first run waits ``first_delay`` seconds, so a crash-looping instance does not purge
    at every start. Failures are logged and retried the next day.
    """

    def __init__(
        self,
        db: Database,
        *,
        inactive_days: int,
        on_purged: PurgeHook | None = None,
        interval: float = 24 * 3600,
        first_delay: float = 300,
    ) -> None:
        self._db = db
        self._inactive_days = inactive_days
        self._on_purged = on_purged
        self._interval = interval
        self._first_delay = first_delay
        self._task: asyncio.Task[None] | None = None
        self.runs = 0

    async def __aenter__(self) -> DailyPurge:
        self._task = asyncio.create_task(self._run(), name="anonymous-purge")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        await asyncio.sleep(self._first_delay)
        while True:
            try:
                purged = await purge_with_lock(
                    self._db, inactive_days=self._inactive_days, on_purged=self._on_purged
                )
            except Exception:
                log.exception("purging inactive anonymous accounts failed; retrying in a day")
            else:
                if purged is None:
                    log.info("anonymous purge: another instance is running it")
                else:
                    log.info("anonymous purge: %d accounts removed", len(purged))
            self.runs += 1
            await asyncio.sleep(self._interval)
