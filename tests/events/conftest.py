"""The real app (both databases) with fast event settings, and a real receiver on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest
from aiohttp.test_utils import TestClient

from events import webhooks
from musicplayground import backends
from musicplayground.app import create_app
from rest.context import REST_CONTEXT
from settings import Settings
from storage.models import WebhookEndpoint
from tests.events.receiver import Receiver

T = TypeVar("T")
# A retry schedule of seconds instead of hours: the same code path, a short test.
FAST_SCHEDULE = (0.3, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(
        settings,
        events_poll_interval=0.2,
        content_event_debounce=0.5,
        webhook_retry_schedule=FAST_SCHEDULE,
        webhook_timeout=2.0,
        webhook_allow_private_addresses=True,
    )


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings) -> TestClient:
    return await aiohttp_client(create_app(settings))


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    made = await Receiver().up()
    yield made
    await made.down()


async def add_endpoint(client: TestClient, url: str, kinds: list[str] | None = None) -> WebhookEndpoint:
    ctx = client.app[REST_CONTEXT]
    async with ctx.db.write_session() as session:
        return await webhooks.add_endpoint(
            session, url=url, kinds=kinds or [], rules=backends.webhook_url_rules(ctx.settings)
        )


async def until(check: Callable[[], Awaitable[T | None]], timeout: float = 10.0, interval: float = 0.1) -> T:
    """Await ``check()`` until it is truthy; its value (TimeoutError after ``timeout``)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s (last: {value!r})")
        await asyncio.sleep(interval)
