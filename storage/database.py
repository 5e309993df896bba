"""The SQL database: one async engine, SQLite (embedded default) or Postgres (asyncpg)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


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
    cursor.close()


def _sqlite_on_begin(conn: Any) -> None:
    # A deferred transaction that reads and then writes fails with SQLITE_BUSY when
    # another writer committed in between; write sessions take the write lock up front.
    mode = "IMMEDIATE" if conn.get_execution_options().get("sqlite_write") else "DEFERRED"
    conn.exec_driver_sql(f"BEGIN {mode}")


class Database:
    """Owns the engine. Use as ``async with Database(url) as db`` (or start/stop)."""

    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False) -> None:
        self.url = url
        self._pool_size = pool_size
        self._echo = echo
        self._engine: AsyncEngine | None = None
        # For read(): SQLite files, a plain sqlite3 engine; else autocommit, as asyncpg would
        # otherwise spend a round trip each on BEGIN and ROLLBACK.
        self._sqlite_reader: Engine | None = None
        self._autocommit: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._write_sessions: async_sessionmaker[AsyncSession] | None = None

    @property
    def dialect(self) -> str:
        return make_url(self.url).get_backend_name()

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("Database is not started")
        return self._engine

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
        self._autocommit = self._engine.execution_options(isolation_level="AUTOCOMMIT")
        if sqlite_file:  # no "begin" listener: each statement is its own snapshot
            self._sqlite_reader = create_engine(
                url.set(drivername="sqlite+pysqlite"), echo=self._echo, connect_args={"timeout": 10}
            )
            event.listen(self._sqlite_reader, "connect", _sqlite_on_connect)
        self._sessions = async_sessionmaker(self._engine, expire_on_commit=False)
        self._write_sessions = async_sessionmaker(
            self._engine.execution_options(sqlite_write=True), expire_on_commit=False
        )

    async def stop(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
        if self._sqlite_reader is not None:
            self._sqlite_reader.dispose()
        self._engine = None
        self._sqlite_reader = None
        self._autocommit = None
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

    async def read(self, query: Callable[[Connection], T]) -> T:
        """``query(connection)`` for a hot read of one or two statements that writes nothing;
        no transaction is opened (each statement sees its own consistent snapshot).

        On SQLite it runs on a plain ``sqlite3`` connection in a worker thread: one thread
        hop for the whole read, where aiosqlite makes one per cursor call (cursor, execute,
        fetch, close, BEGIN, rollback) and that was most of a listing's CPU. Elsewhere it runs
        on the async engine (asyncpg) with ``run_sync``, in autocommit.
        """
        if self._sqlite_reader is not None:
            reader = self._sqlite_reader

            def run() -> T:
                with reader.connect() as connection:
                    return query(connection)

            return await asyncio.to_thread(run)
        if self._autocommit is None:
            raise RuntimeError("Database is not started")
        async with self._autocommit.connect() as connection:
            return await connection.run_sync(query)

    @asynccontextmanager
    async def autocommit_connection(self) -> AsyncIterator[AsyncConnection]:
        """A Core connection in autocommit: each statement is its own transaction."""
        if self._autocommit is None:
            raise RuntimeError("Database is not started")
        async with self._autocommit.connect() as conn:
            yield conn

    @asynccontextmanager
    async def write_connection(self) -> AsyncIterator[AsyncConnection]:
        """A Core connection in a write transaction, for hot paths that need no ORM session."""
        async with self.engine.execution_options(sqlite_write=True).begin() as conn:
            yield conn

    def open_sqlite_connection(self) -> sqlite3.Connection | None:
        """A plain sqlite3 connection to this (file) database, set up like the engine's, for
        a caller that runs whole transactions on a thread of its own; None on Postgres or an
        in-memory database. ``check_same_thread`` is off: that one thread is not this one."""
        url = make_url(self.url)
        if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
            return None
        connection = sqlite3.connect(url.database, timeout=10, check_same_thread=False)
        _sqlite_on_connect(connection, None)
        return connection

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
