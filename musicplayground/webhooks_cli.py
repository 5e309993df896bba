"""``musicplayground webhooks add|list|remove|replay``: the operator's webhook endpoints."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

import click

from events import webhooks
from events.webhook_urls import UnsafeUrl
from musicplayground import backends
from settings import ConfigError, Settings
from storage.database import Database
from storage.errors import DomainError
from storage.models import WebhookEndpoint

T = TypeVar("T")


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _in_database(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    async def run() -> T:
        async with backends.database(settings) as database:
            return await work(database)

    try:
        return asyncio.run(run())
    except (DomainError, UnsafeUrl) as exc:
        raise click.ClickException(str(getattr(exc, "message", exc))) from None


def _when(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 time (2026-12-07T14:00:00Z)") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@click.group(help="Operators' webhooks: signed POSTs of events (docs/events.md).")
def webhooks_group() -> None:
    pass


@webhooks_group.command("add", help="Add an endpoint; prints its id and signing secret.")
@click.argument("url")
@click.option("--event", "kinds", multiple=True, help="An event kind to send (repeatable); none: every kind.")
@click.option("--description", default=None, help="A note for operators.")
def add(url: str, kinds: tuple[str, ...], description: str | None) -> None:
    settings = _settings()

    async def work(database: Database) -> tuple[uuid.UUID, str]:
        async with database.write_session() as session:
            endpoint = await webhooks.add_endpoint(
                session,
                url=url,
                kinds=list(kinds),
                rules=backends.webhook_url_rules(settings),
                description=description,
            )
            return endpoint.id, endpoint.secret

    endpoint_id, secret = _in_database(settings, work)
    click.echo(f"id: {endpoint_id}\nsecret: {secret}")


def _describe(endpoint: WebhookEndpoint) -> str:
    state = "ok"
    if endpoint.disabled_at:
        state = f"DISABLED ({endpoint.disabled_reason})"
    elif endpoint.failing_since:
        state = f"failing since {endpoint.failing_since:%Y-%m-%d %H:%M}"
    return f"{endpoint.id}  {endpoint.url}  kinds={','.join(endpoint.event_kinds) or '*'}  {state}"


@webhooks_group.command("list", help="List the endpoints, their kinds and state.")
def list_() -> None:
    async def work(database: Database) -> list[str]:
        async with database.session() as session:
            return [
                f"{e.id}  {e.url}  kinds={','.join(e.event_kinds) or '*'}  "
                + (
                    f"DISABLED ({e.disabled_reason})"
                    if e.disabled_at
                    else "failing"
                    if e.failing_since
                    else "ok"
                )
                for e in await webhooks.list_endpoints(session)
            ]

    for line in _in_database(_settings(), work):
        click.echo(line)


@webhooks_group.command("remove", help="Remove an endpoint and its delivery log.")
@click.argument("endpoint_id", type=click.UUID)
def remove(endpoint_id: uuid.UUID) -> None:
    async def work(database: Database) -> None:
        async with database.write_session() as session:
            await webhooks.remove_endpoint(session, endpoint_id)

    _in_database(_settings(), work)
    click.echo(f"removed {endpoint_id}")


@webhooks_group.command(
    "replay", help="Send again the events of a time range (and enable the endpoint if it was disabled)."
)
@click.argument("endpoint_id", type=click.UUID)
@click.option("--since", required=True, help="ISO 8601 start (inclusive).")
@click.option("--until", default=None, help="ISO 8601 end (exclusive; default now).")
def replay(endpoint_id: uuid.UUID, since: str, until: str | None) -> None:
    start, end = _when(since), _when(until) if until else datetime.now(UTC)

    async def work(database: Database) -> int:
        async with database.write_session() as session:
            return await webhooks.replay(session, endpoint_id, start, end)

    click.echo(f"{_in_database(_settings(), work)} deliveries queued")
