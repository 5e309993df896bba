"""The ``musicplayground`` command: run the server and manage its database."""

from __future__ import annotations

import asyncio
import logging

import click
from aiohttp import web

from settings import ConfigError, Settings
from storage.database import Database
from storage.errors import NotFound
from storage.migrate import current_revision, head_revision, upgrade
from storage.moderation import set_admin


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


@click.group(
    help="Music Playground server. Configuration comes from environment variables "
    "(see README.md); with none set it runs on the embedded default: SQLite in ./data."
)
def main() -> None:
    pass


@main.command(help="Run the HTTP + Socket.IO server.")
@click.option("--host", default=None, help="Interface to bind (default: $HOST or 0.0.0.0).")
@click.option("--port", type=int, default=None, help="Port to listen on (default: $PORT or 3001).")
def serve(host: str | None, port: int | None) -> None:
    from musicplayground.app import create_app

    settings = _settings()
    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = settings.replace(**overrides)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app = create_app(settings)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    web.run_app(
        app,
        loop=_event_loop(),
        host=settings.host,
        port=settings.port,
        access_log=None,
        shutdown_timeout=10,
        print=lambda _msg: logging.getLogger("musicplayground").info(
            "serving on http://%s:%s", settings.host, settings.port
        ),
    )


def _event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (Linux, macOS): the fan-out to many sockets is mostly
    event-loop work, which uvloop does several times faster than the stock loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


@main.group(help="Database schema (Alembic migrations).")
def db() -> None:
    pass


@db.command("upgrade", help="Apply every pending migration (creates the SQLite file if needed).")
def db_upgrade() -> None:
    async def run() -> None:
        async with Database(_settings().effective_database_url) as database:
            await upgrade(database)
            click.echo(f"database at revision {await current_revision(database)}")

    asyncio.run(run())


@db.command("current", help="Show the database's revision and the code's.")
def db_current() -> None:
    async def run() -> None:
        async with Database(_settings().effective_database_url) as database:
            click.echo(f"database: {await current_revision(database) or 'empty'}")
            click.echo(f"code:     {head_revision()}")

    asyncio.run(run())


@main.group(help="Moderators: grant or revoke admin rights (effective at once, no restart).")
def admin() -> None:
    pass


def _set_admin(username_or_id: str, value: bool) -> None:
    async def run() -> str:
        async with Database(_settings().effective_database_url) as database:
            async with database.write_session() as session:
                user = await set_admin(session, username_or_id, value)
                return f"{user.username or user.id}"

    try:
        who = asyncio.run(run())
    except NotFound as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"{who} is {'now' if value else 'no longer'} an admin")


@admin.command("grant", help="Make a user (username or user id) an admin.")
@click.argument("username_or_id")
def admin_grant(username_or_id: str) -> None:
    _set_admin(username_or_id, True)


@admin.command("revoke", help="Take admin rights away from a user (username or user id).")
@click.argument("username_or_id")
def admin_revoke(username_or_id: str) -> None:
    _set_admin(username_or_id, False)
