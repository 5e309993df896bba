"""Fixtures for real-time tests: the real app on a real socket, accounts, documents, clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from loadtest.client import CollabClient
from tests.helpers import LOOP, bearer, sign_up

ClientFactory = Callable[..., Awaitable[CollabClient]]


@pytest.fixture
def base_url(client: TestClient) -> str:
    return str(client.make_url("")).rstrip("/")


@pytest.fixture
async def owner(client: TestClient) -> dict[str, Any]:
    return await sign_up(client)


@pytest.fixture
async def loop(client: TestClient, owner: dict[str, Any]) -> dict[str, Any]:
    resp = await client.post("/api/loops", json=LOOP, headers=bearer(owner["token"]))
    assert resp.status == 201
    return dict(await resp.json())


@pytest.fixture
async def connect(base_url: str) -> AsyncIterator[ClientFactory]:
    """``await connect(doc_id, token=..., kind="loop")``: a synced CollabClient, closed at the end."""
    clients: list[CollabClient] = []

    async def make(doc_id: str, *, kind: str = "loop", synced: bool = True, **kwargs: Any) -> CollabClient:
        c = CollabClient(base_url, kind, doc_id, **kwargs)
        clients.append(c)
        await c.connect(wait_synced=synced)
        return c

    yield make
    for c in clients:
        await c.close()
