"""The Alembic migrations produce exactly the schema the models describe, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from storage.database import Database
from storage.models import Base
from storage.schema import check_up_to_date, current_revision, head_revision


async def test_migrated_schema_matches_models(database_url: str) -> None:
    def diff(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with Database(database_url) as db:
        async with db.engine.connect() as conn:
            differences = await conn.run_sync(diff)
        assert differences == []
        assert await current_revision(db) == head_revision()
        await check_up_to_date(db)


async def test_empty_database_is_reported_out_of_date(tmp_path: object) -> None:
    from pathlib import Path

    import pytest

    from storage.schema import SchemaOutOfDate

    url = f"sqlite+aiosqlite:///{Path(str(tmp_path)) / 'empty.sqlite3'}"
    async with Database(url) as db:
        with pytest.raises(SchemaOutOfDate, match="musicplayground db upgrade"):
            await check_up_to_date(db)
