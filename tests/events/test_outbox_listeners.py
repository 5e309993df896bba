"""Stopping the event writers mid-transaction (CI once hung 60 s in an app's teardown).

A transaction cancelled inside a statement leaves SQLAlchemy's connection invalidated. The
outbox's rollback listener must not raise there (PendingRollbackError): that replaced the
CancelledError with an ordinary exception, which the content writer's retry loop swallowed,
and shutdown waited for it forever. And the content writer is not cancelled inside a statement
at all: on SQLite the dead connection would keep the write lock.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import text

from events import content_changes
from events.content_changes import ContentChanges
from events.outbox import on_commit_of_events
from music.kinds import DocKind
from storage.database import Database

# A statement that runs for a second or more on each database.
SLOW_STATEMENT = {
    "postgresql": "SELECT pg_sleep(1)",
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) "
    "SELECT count(*) FROM c",
}


class Boom(Exception):
    pass


async def test_an_invalidated_connection_keeps_the_error_that_ended_its_transaction(
    database_url: str,
) -> None:
    async with Database(database_url) as db:
        woken: list[bool] = []
        remove = on_commit_of_events(db.engine, lambda: woken.append(True))
        try:
            with pytest.raises(Boom):
                async with db.write_session() as session:
                    connection = await session.connection()
                    await connection.invalidate()
                    raise Boom
            # The listeners still work on the next transaction.
            async with db.write_session() as session:
                await session.connection()
        finally:
            remove()
        assert woken == []


async def test_a_content_writer_stopped_mid_write_finishes_that_write_and_stops(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped while a write runs, the writer lets that statement finish instead of cutting it
    off (on SQLite that would leave the write lock with a dead connection), then stops, and
    the database takes writes at once."""
    started = asyncio.Event()
    real = content_changes.write_content_events

    async def slow_statement(session, events, window_seconds):  # type: ignore[no-untyped-def]
        """The first write runs a statement that takes a second or so first."""
        monkeypatch.setattr(content_changes, "write_content_events", real)
        started.set()
        await session.execute(text(SLOW_STATEMENT[session.bind.dialect.name]))
        return await real(session, events, window_seconds)

    monkeypatch.setattr(content_changes, "write_content_events", slow_statement)
    async with Database(database_url) as db:
        remove = on_commit_of_events(db.engine, lambda: None)
        try:
            changes = ContentChanges(db, window=0.2)
            await changes.__aenter__()
            changes.edited(DocKind.LOOP, uuid.uuid4(), None)
            await asyncio.wait_for(started.wait(), 5)
            await asyncio.sleep(0.2)  # inside the statement
            await asyncio.wait_for(changes.__aexit__(None, None, None), 20)
            assert changes._task is not None and changes._task.cancelled()
            async with asyncio.timeout(2):  # not waiting for SQLite's busy timeout (10 s)
                async with db.write_session() as session:
                    await session.execute(text("DELETE FROM event_outbox WHERE 1 = 0"))
        finally:
            remove()
