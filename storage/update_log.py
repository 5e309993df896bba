"""Group commit into the durable update log (``document_updates``).

The real-time layer calls :meth:`UpdateLog.append` for every accepted Yjs update and
broadcasts it only once the call returns: by then the entry is committed. One writer
task does all the writing: it waits for the first entry, takes everything queued (up to
a batch limit) and commits it in one write transaction; entries arriving while a commit
is in flight form the next batch. At low load an entry is written at once; under load
many entries share one commit.

When the database refuses a write (connection lost, read-only, disk full, a trigger...), the
batch is NOT failed: the writer keeps it at the head of the queue and retries with capped
backoff until it is durable, so an edit already applied in memory is never half-applied
(relayed to nobody, yet persisted by the next snapshot). The queue is bounded
(``max_pending``): when it is full, :meth:`submit` raises :class:`UpdateLogFull` and the
caller refuses the edit before applying it. Errors that are not the database's (a bug, an
unstarted database) still fail the batch at once.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, Protocol

import asyncpg
from sqlalchemy.exc import DBAPIError

from storage.database import Database, is_sqlite_busy
from storage.document_store import (
    LogEntry,
    append_updates,
    append_updates_postgres,
    append_updates_sqlite,
    sqlite_log_rows,
)
from storage.kinds import RESOURCE_MODELS

log = logging.getLogger(__name__)


class UpdateLogFull(RuntimeError):
    """Too many entries wait for the database: the caller must refuse the update."""


# What the database raises when it cannot take a write now; worth retrying.
_RETRIABLE = (DBAPIError, sqlite3.Error, asyncpg.PostgresError, OSError)


@dataclass(slots=True)
class _Entry:
    resource_type: str
    resource_id: uuid.UUID
    data: bytes
    author: uuid.UUID | None
    future: asyncio.Future[int]


Batch = Sequence[LogEntry]


class _BatchWriter(Protocol):
    """Commits one batch of log entries in one transaction; returns their ids, in order."""

    async def write(self, entries: Batch) -> list[int]: ...

    async def close(self) -> None: ...


class _EngineWriter:
    """In-memory SQLite (tests): a Core connection from the engine's pool."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def write(self, entries: Batch) -> list[int]:
        async with self._db.write_connection() as conn:
            return await append_updates(conn, entries)

    async def close(self) -> None:
        pass


class _PostgresWriter:
    """Postgres: a batch is one statement on an asyncpg connection in autocommit, one round
    trip (:func:`append_updates_postgres`)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def write(self, entries: Batch) -> list[int]:
        async with self._db.postgres_connection() as connection:
            return await append_updates_postgres(connection, entries)

    async def close(self) -> None:
        pass


class _SQLiteWriter:
    """SQLite: connections of its own, so a batch (BEGIN, insert, ids, COMMIT) is one call.

    A batch is committed right here on the event loop when it can take the write lock at
    once (``busy_timeout`` 0 on that connection): with WAL and ``synchronous=NORMAL`` a
    commit is a write to the WAL, ~0.2 ms and no fsync. Handing every batch to a thread
    cost more than the commit: the hop, and under load the thread waiting for the GIL
    (an idle edit took ~1 ms longer). When another connection holds the lock (a REST write,
    a snapshot that could not run on the loop) the batch goes to a thread that waits for
    it: waiting on the loop could deadlock, since that writer may need the loop to finish.
    The inline connection never checkpoints (that fsyncs); the thread does, every
    :data:`CHECKPOINT_EVERY_BATCHES`, on a connection of its own, and the batch after it
    makes the WAL start over (:meth:`_restart_then_append`).
    """

    CHECKPOINT_EVERY_BATCHES: Final = 256
    # How long making the WAL start over may wait for readers to leave it (one batch waits
    # meanwhile); past it the WAL goes on, to start over after a later checkpoint.
    CHECKPOINT_BUSY_TIMEOUT_MS: Final = 25

    def __init__(
        self,
        db: Database,
        inline: sqlite3.Connection,
        waiting: sqlite3.Connection,
        checkpointing: sqlite3.Connection,
    ) -> None:
        self._db = db
        self._inline = inline
        self._waiting = waiting
        self._checkpointing = checkpointing
        checkpointing.execute(f"PRAGMA busy_timeout={self.CHECKPOINT_BUSY_TIMEOUT_MS}")
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="update-log-sqlite")
        self._since_checkpoint = 0
        self._checkpoint: asyncio.Future[None] | None = None
        self._restart_due = False  # a checkpoint ended: the next batch starts the WAL over

    async def write(self, entries: Batch) -> list[int]:
        rows = sqlite_log_rows(self._db.engine.dialect, entries)  # raises once the database stopped
        loop = asyncio.get_running_loop()
        if self._restart_due:
            self._restart_due = False
            ids = await loop.run_in_executor(self._thread, self._restart_then_append, rows)
        else:
            try:
                ids = append_updates_sqlite(self._inline, rows)
            except sqlite3.OperationalError as exc:
                if not is_sqlite_busy(exc):
                    raise
                ids = await loop.run_in_executor(self._thread, append_updates_sqlite, self._waiting, rows)
        self._since_checkpoint += 1
        if self._since_checkpoint >= self.CHECKPOINT_EVERY_BATCHES and self._checkpoint is None:
            self._since_checkpoint = 0
            self._checkpoint = loop.run_in_executor(self._thread, self._run_checkpoint)
            self._checkpoint.add_done_callback(self._checkpoint_done)
        return ids

    def _run_checkpoint(self) -> None:
        """Fold the WAL into the database file, beside the loop's commits (on the thread)."""
        self._checkpointing.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def _checkpoint_done(self, future: asyncio.Future[None]) -> None:
        self._checkpoint = None
        if not future.cancelled() and future.exception() is not None:
            log.warning("update log: WAL checkpoint failed: %s", future.exception())
        else:
            self._restart_due = True

    def _restart_then_append(self, rows: list[tuple[Any, ...]]) -> list[int]:
        """Make the WAL start over, then commit ``rows`` (on the thread, the loop's writer
        waiting for it).

        The checkpoint beside the commits never reaches the WAL's end while they stream in,
        and SQLite starts the WAL over only once all of it is in the database file: without
        this the file grew ~5 MB a second at 1,000 edits/s, for as long as they lasted. With
        no commit in between, a RESTART checkpoint copies the little appended since and has
        the next commit write from the WAL's start. If it cannot have the readers out of the
        WAL within :data:`CHECKPOINT_BUSY_TIMEOUT_MS`, the WAL goes on, and starts over after
        a later checkpoint.
        """
        try:
            self._checkpointing.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
        except sqlite3.Error as exc:  # the batch is committed all the same
            log.warning("update log: WAL restart failed: %s", exc)
        return append_updates_sqlite(self._waiting, rows)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._waiting.close)
        await loop.run_in_executor(self._thread, self._checkpointing.close)
        self._thread.shutdown(wait=True)
        self._inline.close()


class UpdateLog:
    """Group-committing appender to the update log. ``async with UpdateLog(db) as log:``.

    ``max_batch_entries`` / ``max_batch_bytes`` bound one transaction (a batch always
    takes at least one entry). ``max_delay`` (seconds, default 0) lets a busy writer wait
    that long after the first entry of a batch to gather more; at 0 it never sleeps. The
    writer counts as busy when its previous commit ended less than ``busy_window``
    seconds (default 10 x ``max_delay``) before the new entry: an edit on an idle server
    is committed at once, and only a stream of edits pays the gathering delay.

    Counters: ``batches`` and ``entries`` (committed), ``failed_batches`` and
    ``failed_entries``; ``pending`` is the number of entries not yet taken by the writer;
    ``last_batch_failed`` says whether the latest transaction failed (readiness).
    ``on_commit(entries, seconds)`` is called after each committed batch (metrics).
    """

    def __init__(
        self,
        db: Database,
        *,
        max_batch_entries: int = 512,
        max_batch_bytes: int = 4 * 1024 * 1024,
        max_delay: float = 0.0,
        max_pending: int = 10_000,
        max_retry_delay: float = 2.0,
        busy_window: float | None = None,
        name: str = "update-log-writer",
        on_commit: Callable[[int, float], None] | None = None,
    ) -> None:
        busy_window = 10 * max_delay if busy_window is None else busy_window
        if (
            max_batch_entries < 1
            or max_batch_bytes < 1
            or max_delay < 0
            or busy_window < 0
            or max_pending < 1
        ):
            raise ValueError("batch limits must be positive, max_delay and busy_window >= 0")
        self._max_pending = max_pending
        self._max_retry_delay = max_retry_delay
        self._db = db
        self._max_entries = max_batch_entries
        self._max_bytes = max_batch_bytes
        self._max_delay = max_delay
        self._busy_window = busy_window
        self._last_commit_end = float("-inf")
        self._name = name
        self._queue: deque[_Entry] = deque()
        self._in_flight = 0  # entries taken by the writer and not yet committed or back in the queue
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop  # set by start()
        self._writer: _BatchWriter = _EngineWriter(db)
        self._closing = False
        self.batches = 0
        self.entries = 0
        self.failed_batches = 0
        self.failed_entries = 0
        self.retries = 0  # failed attempts that were retried
        self.failing_since: float | None = None  # monotonic time the database began refusing
        self._consecutive_failures = 0
        self.last_batch_failed = False
        self._on_commit = on_commit

    @property
    def full(self) -> bool:
        """No room for another entry: :meth:`submit` would raise :class:`UpdateLogFull`."""
        # The batch being written counts: while the database refuses it, it is still unstored.
        return len(self._queue) + self._in_flight >= self._max_pending

    @property
    def running(self) -> bool:
        """Started, and not stopping: :meth:`append` is accepted."""
        return self._task is not None and not self._closing

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def start(self) -> None:
        """Start the writer task."""
        if self._task is not None:
            raise RuntimeError("UpdateLog is already started")
        self._closing = False
        self._wakeup = asyncio.Event()
        # Kept: asking asyncio for the running loop costs a getpid() system call on Python 3.11.
        self._loop = asyncio.get_running_loop()
        self._writer = self._make_writer()
        self._task = asyncio.create_task(self._run(), name=self._name)

    def _make_writer(self) -> _BatchWriter:
        if self._db.dialect == "postgresql":
            return _PostgresWriter(self._db)
        inline = self._db.open_sqlite_connection(on_loop=True)
        if inline is None:  # in memory
            return _EngineWriter(self._db)
        waiting, checkpointing = self._db.open_sqlite_connection(), self._db.open_sqlite_connection()
        assert waiting is not None and checkpointing is not None  # the same file as inline's
        return _SQLiteWriter(self._db, inline, waiting, checkpointing)

    async def stop(self, *, drain_timeout: float | None = 30.0) -> None:
        """Refuse new entries, write everything already queued, then end the writer.

        If draining takes longer than ``drain_timeout`` seconds (or ``stop`` is cancelled) the
        writer is cancelled; entries it could not confirm fail with RuntimeError.
        """
        task = self._task
        if task is None:
            return
        self._closing = True
        self._wakeup.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), drain_timeout)
        except TimeoutError:
            log.error("update log did not drain in %ss; %d entries left", drain_timeout, len(self._queue))
        finally:
            if not task.done():
                task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:  # the writer never raises, but never let stop() hide it
                log.exception("update log writer failed")
            self._fail_queued(RuntimeError("UpdateLog stopped before this entry was written"))
            self._task = None
            await self._writer.close()

    async def __aenter__(self) -> UpdateLog:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def submit(
        self, resource_type: str, resource_id: uuid.UUID, data: bytes, author: uuid.UUID | None = None
    ) -> asyncio.Future[int]:
        """Queue one update of a loop or song by ``author``; the future resolves with its log id
        once the entry is COMMITTED (or fails with the batch's exception). Never blocks."""
        if self._task is None:
            raise RuntimeError("UpdateLog is not started")
        if self._closing:
            raise RuntimeError("UpdateLog is stopping")
        if resource_type not in RESOURCE_MODELS:
            raise ValueError(f"unknown resource type {resource_type!r}")
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError("an update must be bytes")
        if self.full:
            raise UpdateLogFull(f"{len(self._queue)} updates are waiting for the database")
        future: asyncio.Future[int] = self._loop.create_future()
        self._queue.append(_Entry(resource_type, resource_id, bytes(data), author, future))
        self._wakeup.set()
        return future

    async def append(self, resource_type: str, resource_id: uuid.UUID, data: bytes) -> int:
        """Append one update of a loop or song; returns its log id once it is committed.

        Raises the batch's exception if its transaction failed (the entry is then not
        stored). If the caller is cancelled while waiting, the entry is still written.
        """
        # shield: cancelling the caller must not cancel the entry, only the wait for it.
        return await asyncio.shield(self.submit(resource_type, resource_id, data))

    def _take_batch(self) -> list[_Entry]:
        batch = [self._queue.popleft()]
        size = len(batch[0].data)
        while self._queue and len(batch) < self._max_entries:
            size += len(self._queue[0].data)
            if size > self._max_bytes:
                break
            batch.append(self._queue.popleft())
        return batch

    async def _run(self) -> None:
        while True:
            while not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
            if self._should_gather():
                await asyncio.sleep(self._max_delay)
            batch = self._take_batch()
            self._in_flight = len(batch)
            started = time.perf_counter()
            try:
                ids = await self._writer.write(
                    [(e.resource_type, e.resource_id, e.data, e.author) for e in batch]
                )
            except asyncio.CancelledError:
                # The commit may or may not have happened: these callers cannot be told.
                self._fail(batch, RuntimeError("UpdateLog stopped while writing this entry"))
                raise
            except _RETRIABLE as exc:
                await self._retry_later(batch, exc)
                continue
            except Exception as exc:
                self.failed_batches += 1
                self.failed_entries += len(batch)
                self.last_batch_failed = True
                log.exception("update log: writing a batch of %d entries failed", len(batch))
                self._fail(batch, exc)
                continue
            finally:
                self._in_flight = 0
                self._last_commit_end = self._loop.time()
            if self.failing_since is not None:
                log.warning(
                    "update log: the database takes writes again after %.1fs",
                    time.monotonic() - self.failing_since,
                )
                self.failing_since = None
            self._consecutive_failures = 0
            self.batches += 1
            self.entries += len(batch)
            self.last_batch_failed = False
            if self._on_commit is not None:
                self._on_commit(len(batch), time.perf_counter() - started)
            for entry, entry_id in zip(batch, ids, strict=True):
                if not entry.future.done():
                    entry.future.set_result(entry_id)

    async def _retry_later(self, batch: list[_Entry], exc: BaseException) -> None:
        """Put ``batch`` back at the head of the queue and wait before the next attempt."""
        self.retries += 1
        self._consecutive_failures += 1
        now = time.monotonic()
        if self.failing_since is None:
            self.failing_since = now
            log.error("update log: the database refuses writes (%s); retrying until it is durable", exc)
        self._queue.extendleft(reversed(batch))
        self._in_flight = 0  # back in the queue, counted there
        delay = min(self._max_retry_delay, 0.05 * 2 ** min(self._consecutive_failures, 10))
        if self._closing:
            delay = min(delay, 0.2)
        await asyncio.sleep(delay)

    def _should_gather(self) -> bool:
        if self._max_delay <= 0 or len(self._queue) >= self._max_entries or self._closing:
            return False
        idle_for = self._loop.time() - self._last_commit_end
        return idle_for < self._busy_window

    @staticmethod
    def _fail(batch: list[_Entry], exc: BaseException) -> None:
        for entry in batch:
            if not entry.future.done():
                entry.future.set_exception(exc)
                # Marked as retrieved: a caller that was cancelled never reads its future, and
                # asyncio would report "exception was never retrieved" for it. Awaiting it and
                # its callbacks still get the exception.
                entry.future.exception()

    def _fail_queued(self, exc: BaseException) -> None:
        batch = list(self._queue)
        self._queue.clear()
        self._fail(batch, exc)
