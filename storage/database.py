"""The SQL database: one async engine, SQLite (embedded default) or Postgres (asyncpg)."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sqlite3
from collections.abc import AsyncIterator, Callable, Generator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

import asyncpg
from sqlalchemy import Dialect, Executable, Result, Select, create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import QueuePool, StaticPool

log = logging.getLogger(__name__)
# A SELECT of any columns (SQLAlchemy 2.1 types a Select by the types of its columns).
AnySelect: TypeAlias = Select[*tuple[Any, ...]]
T = TypeVar("T")
# Database work written once and run on a session or on a plain connection: a generator that
# yields each statement and is sent its result (see run_steps, Database.write_steps).
AnyResult: TypeAlias = Result[*tuple[Any, ...]]
Steps: TypeAlias = Generator[Executable, AnyResult, T]
# Connections of the Postgres driver pool (``Database.postgres_connection``): the hot reads
# and the update log's writer, one short statement each. All are opened at start and kept
# (see Database.keep_warm): a connection opened later would be cold when it is needed most.
# The server passes the POSTGRES_POOL_SIZE setting; this is the size for everyone else (tests,
# benchmarks), and a unit test keeps the two equal.
POSTGRES_POOL_SIZE = 4
# Bytes the SQLite WAL file keeps when it starts over (journal_size_limit): eight times
# what the update log appends between two of its checkpoints at 1,000 edits/s (~8 MB).
SQLITE_WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself (see _sqlite_on_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL lets readers proceed while one writer commits; busy_timeout queues writers
    # instead of failing with "database is locked".
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    # When the WAL starts over, its file is cut back to this (it keeps its largest size
    # otherwise: after a burst, or a reader that held checkpoints back for a while).
    cursor.execute(f"PRAGMA journal_size_limit={SQLITE_WAL_SIZE_LIMIT_BYTES}")
    cursor.close()


def _sqlite_on_begin(conn: Any) -> None:
    # A deferred transaction that reads and then writes fails with SQLITE_BUSY when
    # another writer committed in between; write sessions take the write lock up front.
    mode = "IMMEDIATE" if conn.get_execution_options().get("sqlite_write") else "DEFERRED"
    conn.exec_driver_sql(f"BEGIN {mode}")


def is_sqlite_busy(exc: BaseException | None) -> bool:
    """Whether ``exc`` is SQLite's "the write lock is taken" (also its extended codes)."""
    return isinstance(exc, sqlite3.Error) and exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY


def _drive(steps: Steps[T], execute: Callable[[Executable], AnyResult]) -> T:
    try:
        statement = next(steps)
        while True:
            statement = steps.send(execute(statement))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        steps.close()


async def run_steps(session: AsyncSession, steps: Steps[T]) -> T:
    """Run ``steps`` in the caller's session (and transaction); their return value."""
    try:
        statement = next(steps)
        while True:
            statement = steps.send(await session.execute(statement))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        steps.close()


@dataclass(frozen=True)
class _Prepared:
    """A statement compiled once for the dialect, with SQLAlchemy's own processors for its
    parameters and columns, to run straight on the driver."""

    sql: str
    params: tuple[tuple[str, Callable[[Any], Any] | None], ...]  # in placeholder order
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]  # (column index, processor)

    @classmethod
    def compile(cls, statement: AnySelect, dialect: Dialect) -> _Prepared:
        compiled = statement.compile(dialect=dialect)
        if compiled.positiontup is None:  # sqlite3 (qmark) and asyncpg ($n) are positional
            raise ValueError(f"{dialect.name}: not a positional paramstyle")
        params = tuple(
            (name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
            for name in compiled.positiontup
        )
        processors = (
            (i, column.type.dialect_impl(dialect).result_processor(dialect, None))
            for i, column in enumerate(statement.selected_columns)
        )
        return cls(compiled.string, params, tuple((i, fn) for i, fn in processors if fn is not None))

    def arguments(self, values: Mapping[str, Any]) -> list[Any]:
        return [values[name] if fn is None else fn(values[name]) for name, fn in self.params]

    def rows(self, raw: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
        if not self.processors:
            return list(raw)
        rows: list[Sequence[Any]] = []
        for values in raw:
            row = list(values)
            for i, fn in self.processors:
                row[i] = fn(row[i])
            rows.append(row)
        return rows


async def _asyncpg_json_codecs(connection: asyncpg.Connection) -> None:
    # JSON as SQLAlchemy's asyncpg dialect sets it up: decoded, not handed back as text.
    for name in ("json", "jsonb"):
        await connection.set_type_codec(
            name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog", format="text"
        )


async def _run_warm_reads(
    connection: asyncpg.Connection, reads: Sequence[tuple[_Prepared, Mapping[str, Any]]]
) -> None:
    for prepared, values in reads:  # into the connection's statement cache
        await connection.fetch(prepared.sql, *prepared.arguments(values))


async def _keep_session(_connection: asyncpg.Connection) -> None:
    """Pool release without asyncpg's reset (a round trip): reads leave no session state."""


class Database:
    """Owns the engine. Use as ``async with Database(url) as db`` (or start/stop)."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        postgres_pool_size: int = POSTGRES_POOL_SIZE,
        echo: bool = False,
    ) -> None:
        self.url = url
        self._pool_size = pool_size
        self.postgres_pool_size = postgres_pool_size
        self._echo = echo
        self._engine: AsyncEngine | None = None
        # For read(): a plain sqlite3 connection (SQLite files) or an asyncpg pool (Postgres).
        self._sqlite_reader: sqlite3.Connection | None = None
        self._postgres_pool: asyncpg.Pool | None = None
        self._prepared: dict[AnySelect, _Prepared] = {}
        self._warm: list[tuple[_Prepared, Mapping[str, Any]]] = []  # see keep_warm
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._write_sessions: async_sessionmaker[AsyncSession] | None = None
        self._loop_writer: Engine | None = None  # write_steps on a SQLite file

    @property
    def dialect(self) -> str:
        return make_url(self.url).get_backend_name()

    async def keep_warm(self, reads: Sequence[tuple[AnySelect, Mapping[str, Any]]]) -> None:
        """Run the reads of the hot paths (a room opening, the names of those joining) on
        every driver connection now, and on every one opened later before it serves anything.

        On Postgres a connection's first run of a statement parses it and looks up its types,
        ~25 ms against 0.7 ms after: without this the first join storm after a start (a deploy,
        everyone reconnecting at once) paid it on every connection while the storm waited.
        The reads should find nothing (a nil id). Call once the schema is in place."""
        warm = [(self._prepare(statement), values) for statement, values in reads]
        self._warm = warm  # for connections opened from now on (the pool's set-up)
        if self._sqlite_reader is not None:
            for prepared, values in warm:  # into sqlite3's statement cache
                self._sqlite_reader.execute(prepared.sql, prepared.arguments(values)).fetchall()
        if self._postgres_pool is not None:
            async with AsyncExitStack() as held:  # every connection of the pool, held at once
                acquire = self._postgres_pool.acquire
                connections = [
                    await held.enter_async_context(acquire()) for _ in range(self.postgres_pool_size)
                ]
                await asyncio.gather(*(_run_warm_reads(connection, warm) for connection in connections))

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("Database is not started")
        return self._engine

    def pooled_connections(self) -> int:
        """Connections the engine's pool holds open (in use or idle): opened as concurrent
        sessions need them, kept up to the pool's size."""
        if self._engine is None:
            return 0
        pool = self._engine.sync_engine.pool
        if not isinstance(pool, QueuePool):
            return 0
        return pool.checkedin() + pool.checkedout()

    async def start(self) -> None:
        url = make_url(self.url)
        sqlite = url.get_backend_name() == "sqlite"
        sqlite_file = sqlite and bool(url.database) and url.database != ":memory:"
        kwargs: dict[str, Any] = {"echo": self._echo, "pool_pre_ping": False}
        if sqlite:
            if sqlite_file:
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)  # type: ignore[arg-type]
            kwargs["connect_args"] = {"timeout": 10}
        else:
            kwargs.update(pool_size=self._pool_size, max_overflow=self._pool_size)
        self._engine = create_async_engine(url, **kwargs)
        if sqlite:
            event.listen(self._engine.sync_engine, "connect", _sqlite_on_connect)
            event.listen(self._engine.sync_engine, "begin", _sqlite_on_begin)
        if sqlite_file:
            self._sqlite_reader = self.open_sqlite_connection()
            # One plain connection, used only on the event loop's thread (write_steps).
            self._loop_writer = create_engine(
                url.set(drivername="sqlite+pysqlite"),
                creator=self._open_loop_connection,
                poolclass=StaticPool,
                echo=self._echo,
            )
            event.listen(self._loop_writer, "begin", _sqlite_on_begin)
        elif url.get_backend_name() == "postgresql":
            # Connected as the engine connects (same host, credentials, ssl...), minus the
            # options only SQLAlchemy's adapter understands.
            _args, connect = self._engine.dialect.create_connect_args(url)
            connect.pop("prepared_statement_cache_size", None)
            connect.pop("prepared_statement_name_func", None)

            async def set_up(connection: asyncpg.Connection) -> None:
                await _asyncpg_json_codecs(connection)
                await _run_warm_reads(connection, self._warm)

            self._postgres_pool = await asyncpg.create_pool(
                **connect,
                min_size=self.postgres_pool_size,
                max_size=self.postgres_pool_size,
                # Never recycled after a number of queries (asyncpg's default: 50,000, minutes
                # at full load): the replacement would open cold on the hot path, and
                # there is nothing to recycle (a bounded statement cache, no session state).
                max_queries=math.inf,
                init=set_up,
                reset=_keep_session,
            )
        self._sessions = async_sessionmaker(self._engine, expire_on_commit=False)
        self._write_sessions = async_sessionmaker(
            self._engine.execution_options(sqlite_write=True), expire_on_commit=False
        )

    async def stop(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
        if self._sqlite_reader is not None:
            self._sqlite_reader.close()
        if self._loop_writer is not None:
            self._loop_writer.dispose()
        if self._postgres_pool is not None:
            await self._postgres_pool.close()
        self._engine = None
        self._sqlite_reader = None
        self._loop_writer = None
        self._postgres_pool = None
        self._prepared.clear()
        self._warm = []
        self._sessions = None
        self._write_sessions = None

    async def __aenter__(self) -> Database:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A read session in a transaction: committed on success, rolled back on error."""
        if self._sessions is None:
            raise RuntimeError("Database is not started")
        async with self._sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def write_session(self) -> AsyncIterator[AsyncSession]:
        """A session for a transaction that writes (takes SQLite's write lock at BEGIN)."""
        if self._write_sessions is None:
            raise RuntimeError("Database is not started")
        async with self._write_sessions() as session, session.begin():
            yield session

    async def write_steps(self, steps: Steps[T]) -> T:
        """Run ``steps`` in one write transaction (committed on success); their return value.

        On a SQLite file, when no other connection holds the write lock: right here on the
        event loop, BEGIN IMMEDIATE, the statements, COMMIT, with no await in between, so the
        lock is held only while the statements run. It yields to the loop once first, so a
        run of them does not hold the loop. Through a session every statement is a hop to
        aiosqlite's thread and back through a busy loop, the lock is held across all of them,
        and the update log's writer waits behind it: a snapshot under load held it ~100 ms.
        (A thread of its own does no better under load: it holds the lock while it waits
        for the GIL.) When the lock is taken, and on any other database, the steps run in a
        ``write_session``.
        """
        if self._loop_writer is not None:
            await asyncio.sleep(0)
            with self._loop_writer.connect() as connection:
                try:
                    transaction = connection.execution_options(sqlite_write=True).begin()
                except OperationalError as exc:
                    if not is_sqlite_busy(exc.orig):
                        raise
                else:
                    with transaction:  # commits, or rolls back on an exception
                        return _drive(steps, connection.execute)
        async with self.write_session() as session:
            return await run_steps(session, steps)

    async def read(self, statement: AnySelect, values: Mapping[str, Any]) -> list[Sequence[Any]]:
        """The rows of one read-only ``statement``, for the hottest reads (a listing): the
        values SQLAlchemy would return (its own parameter and column processors), outside any
        transaction (the statement sees its own consistent snapshot). ``statement`` should be
        built once (its compiled form is kept per statement object).

        It runs straight on the driver: SQLAlchemy's connection, pool and result layers cost
        more CPU than the statement itself (a listing: 0.4 of 0.75 ms). SQLite (a file): on one
        plain sqlite3 connection, on the event loop, as WAL readers never wait for writers and
        an indexed read takes ~0.1 ms, less than a hop to a worker thread costs (0.1-0.3 ms).
        Postgres: a connection of the driver pool (``postgres_connection``). Anything else (an in-memory
        SQLite): through the engine.
        """
        if self._engine is None:
            raise RuntimeError("Database is not started")
        prepared = self._prepare(statement)
        if self._sqlite_reader is not None:
            cursor = self._sqlite_reader.execute(prepared.sql, prepared.arguments(values))
            return prepared.rows(cursor.fetchall())
        if self._postgres_pool is not None:
            async with self._postgres_pool.acquire() as connection:
                return prepared.rows(await connection.fetch(prepared.sql, *prepared.arguments(values)))
        async with self._engine.connect() as connection:
            return list((await connection.execute(statement, values)).all())

    async def read_each(
        self, statement: AnySelect, values: Sequence[Mapping[str, Any]]
    ) -> list[Sequence[Any]]:
        """The rows of ``statement`` run once for each set of ``values``, all in one list (so
        the statement should select what tells its rows apart): a batch of point reads (the
        shown names of users joining a room) in one step. As ``read``: on the event loop for
        a SQLite file, pipelined in one round trip (asyncpg's ``fetchmany``) on Postgres,
        through the engine otherwise."""
        if self._engine is None:
            raise RuntimeError("Database is not started")
        if not values:
            return []
        prepared = self._prepare(statement)
        if self._sqlite_reader is not None:
            reader = self._sqlite_reader
            return [
                row
                for each in values
                for row in prepared.rows(reader.execute(prepared.sql, prepared.arguments(each)).fetchall())
            ]
        if self._postgres_pool is not None:
            async with self._postgres_pool.acquire() as connection:
                arguments = [prepared.arguments(each) for each in values]
                return prepared.rows(await connection.fetchmany(prepared.sql, arguments))
        async with self._engine.connect() as connection:
            return [row for each in values for row in (await connection.execute(statement, each)).all()]

    async def read_together(
        self, reads: Sequence[tuple[AnySelect, Mapping[str, Any]]]
    ) -> list[list[Sequence[Any]]]:
        """The rows of several read-only statements that must agree with each other (a
        document's state and the log after it), from one snapshot of the database: one list
        of rows per ``(statement, values)``, in order. Runs as ``read`` does, each set of
        statements in one read-only transaction: on the event loop for a SQLite file (no
        await between BEGIN and COMMIT, so no other read shares it), in a ``REPEATABLE READ``
        transaction on a driver connection for Postgres, through the engine otherwise.
        """
        if self._engine is None:
            raise RuntimeError("Database is not started")
        prepared = [self._prepare(statement) for statement, _ in reads]
        if self._sqlite_reader is not None:
            reader = self._sqlite_reader
            reader.execute("BEGIN")
            try:
                return [
                    p.rows(reader.execute(p.sql, p.arguments(values)).fetchall())
                    for p, (_, values) in zip(prepared, reads, strict=True)
                ]
            finally:
                if reader.in_transaction:
                    reader.execute("COMMIT")
        if self._postgres_pool is not None:
            async with (
                self._postgres_pool.acquire() as connection,
                connection.transaction(isolation="repeatable_read", readonly=True),
            ):
                return [
                    p.rows(await connection.fetch(p.sql, *p.arguments(values)))
                    for p, (_, values) in zip(prepared, reads, strict=True)
                ]
        async with self._engine.connect() as connection, connection.begin():
            return [list((await connection.execute(statement, values)).all()) for statement, values in reads]

    def _prepare(self, statement: AnySelect) -> _Prepared:
        prepared = self._prepared.get(statement)
        if prepared is None:
            prepared = self._prepared[statement] = _Prepared.compile(statement, self.engine.dialect)
        return prepared

    @asynccontextmanager
    async def postgres_connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A plain asyncpg connection in autocommit (each statement its own transaction), for
        hot paths of one statement that SQLAlchemy's layers would cost more than (Postgres only)."""
        if self._postgres_pool is None:
            raise RuntimeError("Database is not started on Postgres")
        async with self._postgres_pool.acquire() as connection:
            yield connection

    @asynccontextmanager
    async def write_connection(self) -> AsyncIterator[AsyncConnection]:
        """A Core connection in a write transaction, for hot paths that need no ORM session."""
        async with self.engine.execution_options(sqlite_write=True).begin() as conn:
            yield conn

    def _open_loop_connection(self) -> sqlite3.Connection:
        connection = self.open_sqlite_connection(on_loop=True)
        assert connection is not None  # only made for a SQLite file
        return connection

    def open_sqlite_connection(self, *, on_loop: bool = False) -> sqlite3.Connection | None:
        """A plain sqlite3 connection to this (file) database, set up like the engine's, for a
        hot path that runs its statements on the driver (``read``, the update log's writer);
        None on Postgres or an in-memory database. ``check_same_thread`` is off: the update
        log also uses one on a thread of its own.

        ``on_loop``: for writes on the event loop, which must never wait for the write lock
        there (``busy_timeout`` 0: SQLITE_BUSY at once) nor checkpoint (that fsyncs; the update
        log's thread does it)."""
        url = make_url(self.url)
        if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
            return None
        connection = sqlite3.connect(url.database, timeout=10, check_same_thread=False)
        _sqlite_on_connect(connection, None)
        if on_loop:
            connection.execute("PRAGMA busy_timeout=0")
            connection.execute("PRAGMA wal_autocheckpoint=0")
        return connection

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
