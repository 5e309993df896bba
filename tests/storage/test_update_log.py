"""UpdateLog: group commit into the durable update log, on both backends."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Map
from sqlalchemy import func, select, text

from storage import document_store
from storage.database import SQLITE_WAL_SIZE_LIMIT_BYTES, Database
from storage.models import DocumentUpdate
from storage.update_log import UpdateLog
from tests.helpers import eventually
from tests.storage.test_document_store import make_documents


async def stored_log(db: Database) -> dict[int, tuple[uuid.UUID, bytes]]:
    async with db.session() as session:
        rows = await session.execute(
            select(DocumentUpdate.id, DocumentUpdate.resource_id, DocumentUpdate.data)
        )
        return {int(i): (rid, bytes(data)) for i, rid, data in rows}


async def test_concurrent_appends_share_commits(database_url: str) -> None:
    async with Database(database_url) as db:
        docs = await make_documents(db, loops=3)
        async with UpdateLog(db) as log:
            wanted = [(docs[i % 3], f"update-{i}".encode()) for i in range(200)]
            ids = await asyncio.gather(*(log.append("loop", rid, data) for rid, data in wanted))
            assert log.entries == 200
            assert 1 <= log.batches < 200, log.batches
            assert log.failed_batches == 0 and log.pending == 0

        assert len(set(ids)) == 200
        # Entries are written in the order they were appended.
        assert list(ids) == sorted(ids)
        assert await stored_log(db) == dict(zip(ids, wanted, strict=True))
        for rid in docs:
            async with db.session() as session:
                stored = await document_store.load_document(session, resource_type="loop", resource_id=rid)
            assert stored is not None
            assert [data for _, data in stored.updates] == [data for r, data in wanted if r == rid]


async def test_batches_respect_the_size_limits(database_url: str) -> None:
    async with Database(database_url) as db:
        (loop_id,) = await make_documents(db)
        async with UpdateLog(db, max_batch_entries=3) as log:
            ids = await asyncio.gather(*(log.append("loop", loop_id, b"x") for _ in range(10)))
            assert log.batches >= 4
        async with UpdateLog(db, max_batch_bytes=10) as log:
            # Each entry is 8 bytes: one per batch, and an oversized entry still goes alone.
            more = await asyncio.gather(
                *(log.append("loop", loop_id, b"12345678") for _ in range(3)),
                log.append("loop", loop_id, b"y" * 100),
            )
            assert log.batches == 4
        assert len(set(ids) | set(more)) == 14
        assert len(await stored_log(db)) == 14


async def test_max_delay_gathers_appends_that_arrive_apart_on_a_busy_writer(database_url: str) -> None:
    async with Database(database_url) as db:
        (loop_id,) = await make_documents(db)
        async with UpdateLog(db, max_delay=0.2, busy_window=3600) as log:
            await log.append("loop", loop_id, b"first")  # an idle writer: committed alone, at once

            async def later(delay: float) -> int:
                await asyncio.sleep(delay)
                return await log.append("loop", loop_id, b"x")

            await asyncio.gather(*(later(i * 0.01) for i in range(5)))
            assert (log.batches, log.entries) == (2, 6)


async def test_an_idle_writer_commits_without_the_gathering_delay(database_url: str) -> None:
    async with Database(database_url) as db:
        (loop_id,) = await make_documents(db)
        # A gathering delay far longer than the wait: only an immediate commit passes.
        async with UpdateLog(db, max_delay=600, busy_window=0) as log:
            for _ in range(3):
                await asyncio.wait_for(log.append("loop", loop_id, b"x"), 30)
            assert (log.batches, log.entries) == (3, 3)


async def test_everything_queued_is_durable_after_stop(database_url: str) -> None:
    async with Database(database_url) as db:
        docs = await make_documents(db, loops=2, songs=1)
        kinds = ["loop", "loop", "song"]
        log = UpdateLog(db)
        await log.start()

        async def writer(n: int) -> list[int]:
            got = []
            for i in range(5):
                got.append(await log.append(kinds[n % 3], docs[n % 3], f"{n}:{i}".encode()))
            return got

        tasks = [asyncio.create_task(writer(n)) for n in range(30)]
        await asyncio.sleep(0)  # every writer has queued its first entry
        await log.stop()  # drains the queue, refuses what comes after
        results = await asyncio.gather(*tasks, return_exceptions=True)

        written: list[int] = []
        for result in results:
            if isinstance(result, BaseException):
                assert isinstance(result, RuntimeError) and "stopping" in str(result), result
            else:
                written.extend(result)
        stored = await stored_log(db)
        # Nothing was confirmed that is not stored, and each writer got its first entry in.
        assert set(written) <= set(stored)
        assert len(stored) >= 30
        assert {data.split(b":")[0] for _, data in stored.values()} == {str(n).encode() for n in range(30)}
        assert log.entries == len(stored)


async def test_a_cancelled_caller_still_gets_its_entry_written(database_url: str) -> None:
    async with Database(database_url) as db:
        (loop_id,) = await make_documents(db)
        async with UpdateLog(db) as log:
            task = asyncio.create_task(log.append("loop", loop_id, b"cancelled"))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await log.append("loop", loop_id, b"after")
        assert sorted(data for _, data in (await stored_log(db)).values()) == [b"after", b"cancelled"]


async def test_a_failed_batch_fails_its_callers_and_the_log_keeps_going(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with Database(database_url) as db:
        (loop_id,) = await make_documents(db)
        async with UpdateLog(db) as log:
            await db.stop()  # the next transaction cannot even begin
            results = await asyncio.gather(
                *(log.append("loop", loop_id, b"lost") for _ in range(5)), return_exceptions=True
            )
            assert all(isinstance(r, RuntimeError) and "not started" in str(r) for r in results), results
            assert log.failed_batches >= 1 and log.failed_entries == 5
            assert "writing a batch" in caplog.text

            await db.start()
            saved = await log.append("loop", loop_id, b"saved")
            assert (log.batches, log.entries) == (1, 1)
        assert await stored_log(db) == {saved: (loop_id, b"saved")}


async def test_a_database_error_fails_the_whole_batch(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import storage.update_log

    async with Database(database_url) as db:
        (loop_id,) = await make_documents(db)
        real_postgres = document_store.append_updates_postgres

        async def fail_once(connection: object, entries: list[tuple[str, uuid.UUID, bytes]]) -> list[int]:
            # One statement, its own transaction: it cannot fail half-way, so it fails before.
            if any(data == b"poison" for _, _, data, *_ in entries):
                raise ValueError("boom")
            return await real_postgres(connection, entries)  # type: ignore[arg-type]

        real_sqlite = document_store.append_updates_sqlite

        def fail_once_sqlite(connection: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> list[int]:
            if any(row[2] == b"poison" for row in rows):
                return real_sqlite(_FailingCommit(connection), rows)  # type: ignore[arg-type]
            return real_sqlite(connection, rows)

        monkeypatch.setattr(storage.update_log, "append_updates_postgres", fail_once)  # Postgres
        monkeypatch.setattr(storage.update_log, "append_updates_sqlite", fail_once_sqlite)  # SQLite
        async with UpdateLog(db) as log:
            results = await asyncio.gather(
                log.append("loop", loop_id, b"innocent"),
                log.append("loop", loop_id, b"poison"),
                return_exceptions=True,
            )
            assert [type(r) for r in results] == [ValueError, ValueError]
            ok = await log.append("loop", loop_id, b"ok")
        assert await stored_log(db) == {ok: (loop_id, b"ok")}


class _FailingCommit:
    """A sqlite3 connection whose COMMIT fails with an error that is not the database's."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection
        self.executemany = connection.executemany

    @property
    def in_transaction(self) -> bool:
        return self._connection.in_transaction

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "COMMIT":
            raise ValueError("boom")  # after the INSERT: the transaction must roll back
        return self._connection.execute(sql, *args)


async def test_misuse(database_url: str) -> None:
    async with Database(database_url) as db:
        log = UpdateLog(db)
        with pytest.raises(RuntimeError, match="UpdateLog is not started"):
            await log.append("loop", uuid.uuid4(), b"x")
        await log.stop()  # stopping a log that never started is harmless
        async with log:
            with pytest.raises(RuntimeError, match="already started"):
                await log.start()
            with pytest.raises(ValueError, match="unknown resource type"):
                await log.append("sample", uuid.uuid4(), b"x")
            with pytest.raises(TypeError):
                await log.append("loop", uuid.uuid4(), "text")  # type: ignore[arg-type]
            assert log.running
        assert not log.running
        with pytest.raises(RuntimeError, match="UpdateLog is not started"):
            await log.append("loop", uuid.uuid4(), b"x")
        # It can be started again.
        async with log:
            assert await log.append("loop", uuid.uuid4(), b"x") > 0
        with pytest.raises(ValueError):
            UpdateLog(db, max_batch_entries=0)


async def test_real_yjs_updates_through_the_log(database_url: str) -> None:
    async with Database(database_url) as db:
        (loop_id,) = await make_documents(db)
        doc: Doc = Doc()
        captured: list[bytes] = []
        doc.observe(lambda event: captured.append(event.update))
        chords = doc.get("chords", type=Map)
        meta = doc.get("meta", type=Map)
        for bar, chord in enumerate(["C", "G", "Am", "F"]):
            chords[str(bar * 4)] = {"chord": chord}
        meta["name"] = "Axis"

        async with UpdateLog(db) as log:
            await asyncio.gather(*(log.append("loop", loop_id, u) for u in captured))

        async with db.session() as session:
            stored = await document_store.load_document(session, resource_type="loop", resource_id=loop_id)
        assert stored is not None and stored.state is None
        fresh: Doc = Doc()
        for _, update in stored.updates:
            fresh.apply_update(update)
        assert fresh.get("chords", type=Map).to_py() == {
            "0": {"chord": "C"},
            "4": {"chord": "G"},
            "8": {"chord": "Am"},
            "12": {"chord": "F"},
        }
        assert fresh.get("meta", type=Map).to_py() == {"name": "Axis"}

        async with db.session() as session:
            count = await session.scalar(select(func.count()).select_from(DocumentUpdate))
        assert count == len(captured)


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "log.sqlite3"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


async def test_a_batch_waits_behind_an_open_append_without_blocking_the_loop(database_url: str) -> None:
    """A transaction of this very loop that appended (a REST write) and has not committed
    holds the log's order (SQLite's write lock, Postgres's advisory lock): the log's next
    batch waits for it, gets a later id, and the loop keeps running meanwhile. On SQLite
    batches commit on the loop when the lock is free, so this one must wait on a thread:
    waiting on the loop would deadlock, since the holder needs the loop to commit."""
    async with Database(database_url) as db:
        (loop_id,) = await make_documents(db)
        async with UpdateLog(db) as log:
            first = await log.append("loop", loop_id, b"first")
            async with db.write_session() as holder:
                (held,) = await document_store.append_updates(holder, [("loop", loop_id, b"held")])
                waiting = asyncio.ensure_future(log.append("loop", loop_id, b"waited"))
                await asyncio.sleep(0.3)  # the loop runs while the batch waits
                assert not waiting.done()
            waited = await asyncio.wait_for(waiting, 5)
            last = await log.append("loop", loop_id, b"last")
        assert first < held < waited < last
        assert await stored_log(db) == {
            first: (loop_id, b"first"),
            held: (loop_id, b"held"),
            waited: (loop_id, b"waited"),
            last: (loop_id, b"last"),
        }


async def test_sqlite_the_log_checkpoints_the_wal_itself(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The inline connection never checkpoints (a checkpoint fsyncs, on the loop); the
    writer's thread does, so the WAL is folded into the database file as the log grows."""
    from storage.update_log import _SQLiteWriter

    monkeypatch.setattr(_SQLiteWriter, "CHECKPOINT_EVERY_BATCHES", 1)
    path = Path(sqlite_url.removeprefix("sqlite+aiosqlite:///"))
    async with Database(sqlite_url) as db:
        (loop_id,) = await make_documents(db)
        async with db.session() as session:  # fold the set-up writes in first
            await session.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        before = _file_size(path)
        async with UpdateLog(db) as log:
            for _ in range(100):
                await log.append("loop", loop_id, os.urandom(8192))
            # Most of what was appended is in the file (without checkpoints, none of it is).
            await eventually(lambda: _file_size(path) >= before + 50 * 8192)


async def test_sqlite_a_steady_stream_of_commits_still_lets_the_wal_start_over(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checkpoints that only copy the WAL run beside commits that never pause, never reach
    its end, and SQLite never starts it over: the file grew with every commit. The log's
    checkpoint makes the next commit start the WAL from the beginning, so its file stays
    about as large as what is appended between two checkpoints."""
    from storage.update_log import _SQLiteWriter

    monkeypatch.setattr(_SQLiteWriter, "CHECKPOINT_EVERY_BATCHES", 10)
    path = Path(sqlite_url.removeprefix("sqlite+aiosqlite:///"))
    wal = path.with_name(path.name + "-wal")
    async with Database(sqlite_url) as db:
        (loop_id,) = await make_documents(db)
        async with UpdateLog(db) as log:
            entries = []
            for _ in range(1200):  # one per loop turn: the writer commits them back to back
                entries.append(log.submit("loop", loop_id, os.urandom(8192)))
                await asyncio.sleep(0)
            await asyncio.gather(*entries)
        # 1,200 commits of 8 KB: ~30 MB of WAL if it never started over.
        assert _file_size(wal) < 8 * 1024 * 1024
        async with db.session() as session:
            limit = (await session.execute(text("PRAGMA journal_size_limit"))).scalar_one()
        assert limit == SQLITE_WAL_SIZE_LIMIT_BYTES


def _file_size(path: Path) -> int:
    return path.stat().st_size
