"""Schema migrations (Alembic), run by ``musicplayground db upgrade`` and checked at start."""

from __future__ import annotations

import enum
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError as AlembicError
from sqlalchemy.engine import Connection

from storage.database import Database

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


async def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the database to ``revision`` inside the app's own engine."""

    def _upgrade(connection: Connection) -> None:
        config = alembic_config(db.url)
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with db.engine.begin() as conn:
        await conn.run_sync(_upgrade)


async def current_revision(db: Database) -> str | None:
    def _current(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with db.engine.connect() as conn:
        return await conn.run_sync(_current)


class SchemaOutOfDate(RuntimeError):
    """The database is behind the code: ``musicplayground db upgrade`` must run first."""


class SchemaState(enum.Enum):
    CURRENT = "current"
    BEHIND = "behind"  # pending migrations: the code needs them
    AHEAD = "ahead"  # a newer release migrated it (rolling release): old code keeps working


def _known(revision: str) -> bool:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    try:
        return script.get_revision(revision) is not None
    except AlembicError:
        return False


async def schema_state(db: Database) -> tuple[SchemaState, str | None]:
    """How the database's schema compares with the code's, and its revision."""
    current, head = await current_revision(db), head_revision()
    if current == head:
        return SchemaState.CURRENT, current
    if current is not None and not _known(current):
        return SchemaState.AHEAD, current
    return SchemaState.BEHIND, current


async def check_up_to_date(db: Database) -> SchemaState:
    """Raise ``SchemaOutOfDate`` if migrations are pending; a database ahead is accepted."""
    state, current = await schema_state(db)
    if state is SchemaState.BEHIND:
        raise SchemaOutOfDate(
            f"database schema is at revision {current or 'none'}, the code expects {head_revision()}; "
            "run `musicplayground db upgrade`"
        )
    return state
