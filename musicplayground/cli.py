"""The ``musicplayground`` command: run the server and manage its database."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
from contextlib import ExitStack

import click
from aiohttp import web

from loadtest.command import loadtest
from musicplayground import backends
from musicplayground.observability import configure_logging
from musicplayground.webhooks_cli import webhooks_group
from settings import ConfigError, Settings, mask_url
from storage.errors import NotFound
from storage.moderation import set_admin
from storage.purge import PurgedAccount, purge_anonymous_accounts, purge_with_lock
from storage.schema import SchemaOutOfDate, check_up_to_date, current_revision, head_revision, upgrade
from storage.single_instance import AlreadyServing, only_instance, sqlite_path


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.group(
    help="Music Playground server. Configuration comes from environment variables "
    "(see README.md); with none set it runs on the embedded default: SQLite in ./data."
)
def main() -> None:
    pass


@main.command(help="Run the HTTP + Socket.IO server.")
@click.option("--host", default=None, help=f"Interface to bind (default: $HOST or {Settings.host}).")
@click.option(
    "--port", type=int, default=None, help=f"Port to listen on (default: $PORT or {Settings.port})."
)
def serve(host: str | None, port: int | None) -> None:
    settings = _settings().listening_on(host=host, port=port, env=os.environ)
    configure_logging(settings)
    # Everything that can refuse the start is checked before anything is created on disk.
    listener = _listen(settings.host, settings.port)
    from musicplayground.app import create_app  # the whole product: imported once the port is ours

    with ExitStack() as stack:
        try:
            if settings.redis_url:
                _check_redis(settings.redis_url)
            database = sqlite_path(settings.effective_database_url)
            if database is not None:  # SQLite is single-instance: a second server is refused
                try:
                    stack.enter_context(only_instance(database))
                except AlreadyServing as exc:
                    raise click.ClickException(str(exc)) from None
            app = create_app(settings)
        except (ConfigError, click.ClickException) as exc:
            listener.close()
            raise click.ClickException(str(exc)) from None
        _run(app, settings, listener)


def _run(app: web.Application, settings: Settings, listener: socket.socket) -> None:
    from musicplayground.app import server_options

    app.on_startup.append(_freeze_startup_objects)  # last: after everything else has started
    try:
        web.run_app(
            app,
            loop=_event_loop(),
            sock=listener,
            access_log=None,  # ours (musicplayground.access) carries the request id
            shutdown_timeout=10,
            **server_options(settings),
            print=lambda _msg: logging.getLogger("musicplayground").info(
                "serving on http://%s:%s (%s)", settings.host, settings.port, settings.public_base_url
            ),
        )
    except SchemaOutOfDate as exc:
        raise click.ClickException(str(exc)) from None


async def _freeze_startup_objects(_app: web.Application) -> None:
    """Take what exists once the server has started (modules, the app, its pools: most of
    the heap, alive until exit) out of the cyclic garbage collector's reach, so that a full
    collection scans only what serving creates. A full collection of the whole heap paused
    the event loop for ~90 ms under load: the p99 of every message in flight."""
    gc.collect()
    gc.freeze()


def _listen(host: str, port: int) -> socket.socket:
    """Bind the listening socket up front: a busy port is one line, before any side effect."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        hint = " (is another server running? choose another with --port or PORT)" if exc.errno == 98 else ""
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}{hint}") from None
    sock.set_inheritable(False)
    return sock


def _check_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise click.ClickException(f"REDIS_URL unreachable: {mask_url(url)} ({exc})") from None
    finally:
        client.close()


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
        async with backends.database(_settings()) as database:
            await upgrade(database)
            click.echo(f"database at revision {await current_revision(database)}")

    asyncio.run(run())


@db.command("current", help="Show the database's revision and the code's.")
def db_current() -> None:
    async def run() -> None:
        async with backends.database(_settings()) as database:
            click.echo(f"database: {await current_revision(database) or 'empty'}")
            click.echo(f"code:     {head_revision()}")

    asyncio.run(run())


@main.command(
    "config",
    help="Print the effective configuration, one environment variable a line (secrets masked), and exit.",
)
def config() -> None:
    settings = _settings()
    rows = settings.describe()
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        click.echo(f"{name.ljust(width)}  {value}")


@main.command("purge-anonymous", help="Delete anonymous accounts inactive for N days, with all their data.")
@click.option(
    "--inactive-days",
    type=click.IntRange(min=1),
    default=None,
    help="Inactivity that qualifies "
    f"(default: $ANONYMOUS_RETENTION_DAYS or {Settings.anonymous_retention_days}).",
)
@click.option("--dry-run", is_flag=True, help="Only print what would be removed.")
def purge_anonymous(inactive_days: int | None, dry_run: bool) -> None:
    from musicplayground.app import purge_files_hook

    settings = _settings()
    days = inactive_days or settings.anonymous_retention_days

    async def run() -> list[PurgedAccount]:
        async with backends.database(settings) as database:
            await check_up_to_date(database)
            if dry_run:
                return await purge_anonymous_accounts(database, inactive_days=days, dry_run=True)
            async with backends.sample_blobs(settings) as blobs:
                purged = await purge_with_lock(
                    database, inactive_days=days, on_purged=purge_files_hook(blobs)
                )
            if purged is None:
                raise click.ClickException("another instance is purging right now; try again later")
            return purged

    try:
        accounts = asyncio.run(run())
    except SchemaOutOfDate as exc:
        raise click.ClickException(str(exc)) from None
    verb = "would remove" if dry_run else "removed"
    for account in accounts:
        click.echo(
            f"{verb} {account.user_id}  last seen {account.last_seen_at:%Y-%m-%d}  "
            f"{account.loops} loops, {account.songs} songs, {account.samples} samples"
        )
    click.echo(f"{len(accounts)} anonymous accounts inactive for {days}+ days {verb}")


main.add_command(loadtest)
main.add_command(webhooks_group, name="webhooks")


@main.group(help="Moderators: grant or revoke admin rights (effective at once, no restart).")
def admin() -> None:
    pass


def _set_admin(username_or_id: str, value: bool) -> None:
    async def run() -> str:
        async with backends.database(_settings()) as database:
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
