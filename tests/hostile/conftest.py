"""Fixtures of the hostile-client suite: the real app with its real HTTP server options,
clients from the real-time suite, and a probe that /healthz keeps answering during abuse."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pycrdt import Map

from loadtest.client import CollabClient
from musicplayground.app import create_app, server_options
from settings import Settings
from tests.helpers import eventually
from tests.realtime.conftest import base_url, connect, loop, owner  # noqa: F401  (fixtures)

HEALTH_TIMEOUT = 3.0  # generous: a stalled event loop (the bugs these tests keep out) takes longer


class ServeLikeTestServer(TestServer):
    """aiohttp's TestServer with the HTTP server options of ``musicplayground serve``
    (the stock one drops keyword arguments meant for the server)."""

    def __init__(self, app: web.Application, options: dict[str, Any]) -> None:
        super().__init__(app)
        self._options = options

    async def _make_runner(self, **kwargs: Any) -> web.AppRunner:
        return web.AppRunner(self.app, **{**kwargs, **self._options})


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings) -> TestClient:
    """The real app on a real socket, with the HTTP server options ``serve`` uses."""
    return await aiohttp_client(ServeLikeTestServer(create_app(settings), server_options(settings)))


class HealthProbe:
    """Polls /healthz on its own connection; every answer must come within HEALTH_TIMEOUT.
    ``latencies`` holds how long each answer took, in seconds (see :meth:`quantile`)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers = 0
        self.failures: list[str] = []
        self.latencies: list[float] = []

    def quantile(self, q: float) -> float:
        """The ``q`` quantile of the latencies (nearest rank: p99 of 100 answers is the 99th)."""
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    started = time.perf_counter()
                    async with asyncio.timeout(HEALTH_TIMEOUT):
                        async with session.get(self.url) as resp:
                            if resp.status != 200:
                                self.failures.append(f"status {resp.status}")
                            await resp.read()
                    self.latencies.append(time.perf_counter() - started)
                    self.answers += 1
                except TimeoutError:
                    self.failures.append(f"/healthz took more than {HEALTH_TIMEOUT} s")
                await asyncio.sleep(0.05)


HealthyDuring = Callable[[], contextlib.AbstractAsyncContextManager[HealthProbe]]


@pytest.fixture
def healthy_during(base_url: str) -> HealthyDuring:  # noqa: F811
    """``async with healthy_during(): <abuse>``: asserts /healthz answered throughout."""

    @contextlib.asynccontextmanager
    async def probe() -> AsyncIterator[HealthProbe]:
        health = HealthProbe(f"{base_url}/healthz")
        task = asyncio.create_task(health.run(), name="health-probe")
        try:
            yield health
            await eventually(lambda: health.answers >= 2, timeout=10)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert health.failures == [], health.failures

    return probe


RoomCheck = Callable[[CollabClient, CollabClient, str], Awaitable[None]]


async def room_still_works(a: CollabClient, b: CollabClient, value: str) -> None:
    """A well-behaved client's edit reaches another well-behaved client."""
    a.doc.get("meta", type=Map)["name"] = value
    await eventually(lambda: b.doc.get("meta", type=Map).get("name") == value, timeout=10)


def codes(c: CollabClient) -> list[str]:
    return [e["code"] for e in c.errors]
