"""``Database.read``: the hot-read path (no transaction; a plain sqlite3 connection on SQLite)."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection, func, select
from sqlalchemy.exc import DBAPIError

from storage.database import Database
from storage.library import create_document
from storage.models import Loop, User
from tests.storage.test_documents import LOOP_VALUES, make_documents


def count_loops(connection: Connection) -> int:
    return int(connection.execute(select(func.count()).select_from(Loop)).scalar_one())


async def test_read_sees_committed_rows_only_and_does_not_wait_for_a_writer(database_url: str) -> None:
    async with Database(database_url) as db:
        await make_documents(db, loops=1)
        async with db.write_session() as session:
            owner = (await session.execute(select(User.id))).scalar_one()
            await create_document(session, Loop, user_id=owner, values=dict(LOOP_VALUES), quota=100)
            await session.flush()
            # The writer holds its transaction (SQLite: the write lock) open: the read goes
            # ahead and sees the last committed state.
            assert await db.read(count_loops) == 1
        assert await db.read(count_loops) == 2


async def test_read_propagates_errors_and_the_next_read_works(database_url: str) -> None:
    async with Database(database_url) as db:

        def broken(connection: Connection) -> None:
            connection.exec_driver_sql("SELECT * FROM no_such_table")

        with pytest.raises(DBAPIError, match="no_such_table"):
            await db.read(broken)
        assert await db.read(count_loops) == 0
