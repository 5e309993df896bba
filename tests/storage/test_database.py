"""``Database.read``, ``read_each`` and ``read_together``: the hot-read paths, straight on the
driver; ``Database.write_steps``: a write transaction written once as steps."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
from sqlalchemy import bindparam, func, select, text, update

from musicplayground import backends
from settings import Settings
from storage.database import POSTGRES_POOL_SIZE, Database, Steps, run_steps
from storage.document_store import room_open_reads
from storage.library import create_document, listed_columns
from storage.models import Loop, User
from storage.users import SHOWN_NAME_WARM_READ
from tests.storage.test_document_store import LOOP_VALUES, in_memory_database, make_documents

COUNT_LOOPS = select(func.count()).select_from(Loop)
LOOPS_OF = select(Loop).where(Loop.user_id == bindparam("user_id")).order_by(Loop.created_at)


async def count_loops(db: Database) -> int:
    [(count,)] = await db.read(COUNT_LOOPS, {})
    return int(count)


async def test_read_sees_committed_rows_only_and_does_not_wait_for_a_writer(database_url: str) -> None:
    async with Database(database_url) as db:
        await make_documents(db, loops=1)
        async with db.write_session() as session:
            owner = (await session.execute(select(User.id))).scalar_one()
            await create_document(session, Loop, user_id=owner, values=dict(LOOP_VALUES), quota=100)
            await session.flush()
            # The writer holds its transaction (SQLite: the write lock) open: the read goes
            # ahead and sees the last committed state.
            assert await count_loops(db) == 1
        assert await count_loops(db) == 2


async def test_read_returns_the_values_the_engine_returns(database_url: str) -> None:
    async with Database(database_url) as db:
        (loop_id,) = await make_documents(db, loops=1)
        async with db.write_session() as session:
            row = await session.get(Loop, loop_id)
            assert row is not None
            row.hidden_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
            owner = row.user_id
        async with db.engine.connect() as connection:
            expected = (await connection.execute(LOOPS_OF, {"user_id": owner})).all()
        # Parameters and columns go through SQLAlchemy's own processors: UUIDs, JSON, booleans,
        # timestamps and NULLs come back as the engine hands them back.
        assert [tuple(row) for row in await db.read(LOOPS_OF, {"user_id": owner})] == expected
        assert await db.read(LOOPS_OF, {"user_id": uuid.uuid4()}) == []


async def test_listed_columns_carry_ids_as_text_and_timestamps_in_utc(database_url: str) -> None:
    async with Database(database_url) as db:
        (loop_id,) = await make_documents(db, loops=1)
        listing = select(*listed_columns(Loop, include_content=True)).where(Loop.id == bindparam("id"))
        [row] = await db.read(listing, {"id": loop_id})
        values = dict(zip([c.key for c in listing.selected_columns], row, strict=True))
        async with db.session() as session:
            stored = await session.get(Loop, loop_id)
        assert stored is not None
        assert (values["id"], values["user_id"]) == (str(loop_id), str(stored.user_id))
        assert values["forked_from"] is None and values["hidden_at"] is None
        assert values["created_at"].tzinfo is not None
        assert values["created_at"] == stored.created_at.replace(tzinfo=stored.created_at.tzinfo or UTC)
        assert values["chord_progression"] == LOOP_VALUES["chord_progression"]


async def test_read_propagates_errors_and_the_next_read_works(database_url: str) -> None:
    async with Database(database_url) as db:
        broken = select(text("*")).select_from(text("no_such_table"))
        # The driver's own error: the read runs below SQLAlchemy.
        with pytest.raises((sqlite3.Error, asyncpg.PostgresError), match="no_such_table"):
            await db.read(broken, {})
        assert await count_loops(db) == 0


LOOP_NAME = select(Loop.id, Loop.name).where(Loop.id == bindparam("id"))


async def _read_each_and_together(db: Database) -> None:
    first, second = await make_documents(db, loops=2)
    ghost = uuid.uuid4()
    # read_each: the statement once per set of values, every row in one list, in order.
    rows = await db.read_each(LOOP_NAME, [{"id": second}, {"id": ghost}, {"id": first}])
    assert [tuple(row) for row in rows] == [(second, LOOP_VALUES["name"]), (first, LOOP_VALUES["name"])]
    assert await db.read_each(LOOP_NAME, []) == []
    # read_together: one list of rows per statement, in order.
    names, count = await db.read_together([(LOOP_NAME, {"id": first}), (COUNT_LOOPS, {})])
    assert [tuple(row) for row in names] == [(first, LOOP_VALUES["name"])]
    assert [tuple(row) for row in count] == [(2,)]


async def test_read_each_and_read_together(database_url: str) -> None:
    async with Database(database_url) as db:
        await _read_each_and_together(db)


async def test_read_each_and_read_together_through_the_engine_on_an_in_memory_database() -> None:
    async with in_memory_database() as db:
        await _read_each_and_together(db)


async def test_read_together_ends_its_transaction_on_errors(database_url: str) -> None:
    async with Database(database_url) as db:
        await make_documents(db, loops=1)
        broken = select(text("*")).select_from(text("no_such_table"))
        with pytest.raises((sqlite3.Error, asyncpg.PostgresError), match="no_such_table"):
            await db.read_together([(COUNT_LOOPS, {}), (broken, {})])
        # The failed read's transaction is over: the next read sees a later commit.
        await make_documents(db, loops=1)
        [[(before,)], [(after,)]] = await db.read_together([(COUNT_LOOPS, {}), (COUNT_LOOPS, {})])
        assert before == after == 2
        assert await count_loops(db) == 2


# --- write_steps -----------------------------------------------------------------------


def rename_all(name: str, *, then_fail: bool = False) -> Steps[int]:
    """Steps: rename every loop, read the count back (the transaction sees its own write)."""
    yield update(Loop).values(name=name)
    (renamed,) = (yield select(func.count()).select_from(Loop).where(Loop.name == name)).one()
    if then_fail:
        raise RuntimeError("a step failed")
    return int(renamed)


async def loop_names(db: Database) -> list[str]:
    return sorted(name for (name,) in await db.read(select(Loop.name), {}))


async def test_write_steps_commit_or_roll_back_as_one_transaction(database_url: str) -> None:
    async with Database(database_url) as db:
        await make_documents(db, loops=2)
        assert await db.write_steps(rename_all("A")) == 2
        assert await loop_names(db) == ["A", "A"]
        with pytest.raises(RuntimeError, match="a step failed"):
            await db.write_steps(rename_all("B", then_fail=True))
        assert await loop_names(db) == ["A", "A"]  # the failed transaction left nothing
        assert await db.write_steps(rename_all("C")) == 2  # and did not stay open
        assert await loop_names(db) == ["C", "C"]
        async with db.write_session() as session:  # the same steps, in a caller's session
            assert await run_steps(session, rename_all("D")) == 2
        assert await loop_names(db) == ["D", "D"]


async def test_write_steps_run_without_a_loop_turn_on_a_sqlite_file(backend: str, database_url: str) -> None:
    """On a SQLite file nothing else runs on the loop between BEGIN and COMMIT (so the
    write lock is not held across loop turns); elsewhere each statement is awaited."""
    async with Database(database_url) as db:
        await make_documents(db, loops=1)
        turns = 0

        async def count_turns() -> None:
            nonlocal turns
            while True:
                turns += 1
                await asyncio.sleep(0)

        def observed(steps: Steps[int]) -> Steps[list[int]]:
            seen = [turns]
            statement = next(steps)
            try:
                while True:
                    result = yield statement
                    seen.append(turns)
                    statement = steps.send(result)
            except StopIteration:
                return seen

        ticker = asyncio.ensure_future(count_turns())
        try:
            await asyncio.sleep(0.01)
            seen = await db.write_steps(observed(rename_all("A")))
        finally:
            ticker.cancel()
        assert len(seen) == 3
        if backend == "sqlite":
            assert len(set(seen)) == 1, seen
        else:
            assert seen[0] < seen[1] < seen[2], seen
        assert await loop_names(db) == ["A"]


async def test_write_steps_wait_for_a_write_session_holding_the_lock(database_url: str) -> None:
    async with Database(database_url) as db:
        await make_documents(db, loops=1)
        async with db.write_session() as session:
            await session.execute(update(Loop).values(name="first"))
            # SQLite: this session holds the write lock; the steps cannot take it on the
            # loop, so they wait for it in a session of their own, without blocking the loop.
            steps = asyncio.ensure_future(db.write_steps(rename_all("second")))
            await asyncio.sleep(0.2)
            assert not steps.done()
        assert await steps == 1
        assert await loop_names(db) == ["second"]


async def test_write_steps_through_the_engine_on_an_in_memory_database() -> None:
    async with in_memory_database() as db:
        await make_documents(db, loops=2)
        assert await db.write_steps(rename_all("A")) == 2
        with pytest.raises(RuntimeError, match="a step failed"):
            await db.write_steps(rename_all("B", then_fail=True))
        assert await loop_names(db) == ["A", "A"]


# --- keep_warm: the hot reads prepared on every connection before it serves ------------


async def test_kept_warm_reads_run_at_once(database_url: str) -> None:
    """keep_warm runs the reads on the driver connections when it is called (a read that
    cannot run fails it), not on the first request that needs them."""
    broken = select(text("nothing")).select_from(text("no_such_table"))
    async with Database(database_url) as db:
        with pytest.raises((sqlite3.OperationalError, asyncpg.UndefinedTableError)):
            await db.keep_warm([(broken, {})])


async def test_keep_warm_needs_a_started_database(database_url: str) -> None:
    with pytest.raises(RuntimeError, match="not started"):
        await Database(database_url).keep_warm([(COUNT_LOOPS, {})])


async def _prepared_statements(connection: asyncpg.Connection) -> list[str]:
    return [
        statement for (statement,) in await connection.fetch("SELECT statement FROM pg_prepared_statements")
    ]


def _holds_the_join_reads(prepared: list[str]) -> bool:
    return all(
        any(f"FROM {table}" in s and "array_agg" in s for s in prepared) for table in ("loops", "songs")
    ) and any("users.display_name" in s for s in prepared)


async def test_every_postgres_connection_holds_the_join_reads_prepared(postgres_url: str) -> None:
    """All POSTGRES_POOL_SIZE driver connections are open once the database has started;
    after keep_warm each holds the reads of a room opening and of a joining user's name as
    prepared statements (Postgres's own pg_prepared_statements), and so does a connection
    opened later in place of a lost one: a join storm finds no connection cold."""

    async def pool_connections(db: Database) -> tuple[list[int], list[list[str]]]:
        async with contextlib.AsyncExitStack() as held:  # held at once: different connections
            connections = [
                await held.enter_async_context(db.postgres_connection()) for _ in range(POSTGRES_POOL_SIZE)
            ]
            return [c.get_server_pid() for c in connections], [
                await _prepared_statements(c) for c in connections
            ]

    async with Database(postgres_url) as db:
        pids, _ = await pool_connections(db)
        assert len(set(pids)) == POSTGRES_POOL_SIZE
        await db.keep_warm([*room_open_reads(db.dialect), SHOWN_NAME_WARM_READ])
        warmed_pids, prepared = await pool_connections(db)
        assert set(warmed_pids) == set(pids)  # the same connections, kept
        assert all(_holds_the_join_reads(statements) for statements in prepared), prepared

        admin = await asyncpg.connect(postgres_url.replace("+asyncpg", ""))
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", pids[0])
        finally:
            await admin.close()
        for _ in range(100):  # until the pool has noticed and opened a new connection
            await asyncio.sleep(0.02)
            new_pids, prepared = await pool_connections(db)
            if pids[0] not in new_pids:
                break
        assert pids[0] not in new_pids and len(set(new_pids)) == POSTGRES_POOL_SIZE
        assert all(_holds_the_join_reads(statements) for statements in prepared), prepared


async def test_the_driver_pool_has_the_postgres_pool_size_setting(postgres_url: str) -> None:
    """POSTGRES_POOL_SIZE connections are opened at start, and no more are ever opened."""
    settings = Settings(database_url=postgres_url, postgres_pool_size=2)
    async with backends.database(settings) as db, contextlib.AsyncExitStack() as held:
        connections = [await held.enter_async_context(db.postgres_connection()) for _ in range(2)]
        assert len({c.get_server_pid() for c in connections}) == 2
        with pytest.raises(TimeoutError):  # a third waits for one of the two
            async with asyncio.timeout(0.5):
                await held.enter_async_context(db.postgres_connection())
