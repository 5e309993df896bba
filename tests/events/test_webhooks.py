"""Webhooks end to end in the real app (both databases) to a real receiver on loopback:
signed and verifiable, retried until a receiver that was down is back, the delivery log,
replay, disabling an endpoint that keeps failing, no redirects followed."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from musicplayground.app import create_app
from rest.context import REST_CONTEXT
from settings import Settings
from storage.models import WebhookEndpoint
from tests.events.conftest import add_endpoint, until
from tests.events.receiver import Receiver
from tests.helpers import LOOP, bearer, eventually, sign_up


async def _at_least(count: Awaitable[int], minimum: int) -> bool:
    return await count >= minimum


async def make_loop(client: TestClient, token: str, **fields: Any) -> dict[str, Any]:
    resp = await client.post("/api/loops", json={**LOOP, **fields}, headers=bearer(token))
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


async def test_events_arrive_signed_and_verifiable(client: TestClient, receiver: Receiver) -> None:
    endpoint = await add_endpoint(client, receiver.url)
    owner = await sign_up(client)
    loop = await make_loop(client, owner["token"])
    resp = await client.patch(
        f"/api/loops/{loop['id']}", json={"isPublic": True}, headers=bearer(owner["token"])
    )
    assert resp.status == 200
    await eventually(lambda: len(receiver.received) >= 2, timeout=10)
    events = receiver.events(secret=endpoint.secret)  # verified by the reference library
    assert [e["type"] for e in events] == ["loop.created", "loop.visibility_changed"]
    assert events[0]["data"]["loop"] == {"kind": "loop", "id": loop["id"], "name": LOOP["name"]}
    assert events[1]["data"]["isPublic"] is True
    first = receiver.received[0]
    assert first.headers["webhook-id"] == f"evt_{events[0]['id'].replace('-', '')}"


async def test_an_endpoint_gets_only_its_kinds(client: TestClient, receiver: Receiver) -> None:
    await add_endpoint(client, receiver.url, kinds=["loop.deleted"])
    owner = await sign_up(client)
    loop = await make_loop(client, owner["token"])
    assert (await client.delete(f"/api/loops/{loop['id']}", headers=bearer(owner["token"]))).status == 200
    await eventually(lambda: receiver.received, timeout=10)
    await asyncio.sleep(0.5)  # nothing else follows
    assert [e["type"] for e in receiver.events()] == ["loop.deleted"]


async def test_a_receiver_down_then_up_gets_everything(client: TestClient, receiver: Receiver) -> None:
    endpoint = await add_endpoint(client, receiver.url)
    await receiver.down()
    owner = await sign_up(client)
    loops = [await make_loop(client, owner["token"], name=f"loop {i}") for i in range(5)]
    ctx = client.app[REST_CONTEXT]

    async def failed_attempts() -> int:
        rows = await _deliveries(client, endpoint.id)
        return sum(r["attempts"] for r in rows)

    # Each of the five tried at least twice while the receiver is down.
    await until(lambda: _at_least(failed_attempts(), 10))
    await receiver.up()
    await eventually(lambda: len(set(receiver.ids())) == 5, timeout=15)
    names = sorted(e["data"]["loop"]["name"] for e in receiver.events(secret=endpoint.secret))
    assert names == sorted(loop["name"] for loop in loops)

    async def all_delivered() -> list[dict[str, Any]] | None:  # outcomes are recorded after the answers
        rows = await _deliveries(client, endpoint.id)
        return rows if {r["status"] for r in rows} == {"delivered"} else None

    log = await until(all_delivered)
    assert all(r["attempts"] >= 2 and r["lastStatusCode"] == 200 for r in log)
    async with ctx.db.session() as session:
        assert (await session.get(WebhookEndpoint, endpoint.id)).failing_since is None  # type: ignore[union-attr]


async def _admin(client: TestClient) -> str:
    admin = await sign_up(client)
    ctx = client.app[REST_CONTEXT]
    from storage.moderation import set_admin

    async with ctx.db.write_session() as session:
        await set_admin(session, admin["user"]["id"], True)
    return str(admin["token"])


async def _deliveries(client: TestClient, endpoint_id: Any) -> list[dict[str, Any]]:
    """The delivery log as the admin route serves it (read straight from the database)."""
    from events import webhooks

    async with client.app[REST_CONTEXT].db.session() as session:
        return await webhooks.deliveries(session, endpoint_id, before=None, limit=200)


async def test_the_delivery_log_is_for_moderators_only(client: TestClient, receiver: Receiver) -> None:
    endpoint = await add_endpoint(client, receiver.url)
    user = await sign_up(client)
    resp = await client.get(f"/api/admin/webhooks/{endpoint.id}/deliveries", headers=bearer(user["token"]))
    assert resp.status == 403
    token = await _admin(client)
    await make_loop(client, user["token"])
    await eventually(lambda: receiver.received, timeout=10)
    resp = await client.get(f"/api/admin/webhooks/{endpoint.id}/deliveries", headers=bearer(token))
    assert resp.status == 200, await resp.text()
    [row] = (await resp.json())["deliveries"]
    assert row["eventType"] == "loop.created" and row["status"] == "delivered" and row["attempts"] == 1
    resp = await client.get(f"/api/admin/webhooks/{endpoint.id}/deliveries?limit=0", headers=bearer(token))
    assert resp.status == 400
    missing = "00000000-0000-4000-8000-000000000000"
    resp = await client.get(f"/api/admin/webhooks/{missing}/deliveries", headers=bearer(token))
    assert resp.status == 404


async def test_replay_sends_a_time_range_again(client: TestClient, receiver: Receiver) -> None:
    endpoint = await add_endpoint(client, receiver.url)
    owner = await sign_up(client)
    started = datetime.now(UTC)
    await make_loop(client, owner["token"], name="one")
    await make_loop(client, owner["token"], name="two")
    await eventually(lambda: len(receiver.received) == 2, timeout=10)
    ctx = client.app[REST_CONTEXT]
    from events import webhooks

    async with ctx.db.write_session() as session:
        queued = await webhooks.replay(
            session, endpoint.id, started, datetime.now(UTC) + timedelta(seconds=1)
        )
    assert queued == 2
    await eventually(lambda: len(receiver.received) == 4, timeout=10)
    ids = receiver.ids()
    assert ids[2:] == ids[:2] or sorted(ids[2:]) == sorted(ids[:2])  # the same events, same ids


async def test_an_endpoint_failing_too_long_is_disabled(
    aiohttp_client: Any, settings: Settings, receiver: Receiver
) -> None:
    client = await aiohttp_client(create_app(dataclasses.replace(settings, webhook_disable_after=1.0)))
    receiver.status = 500
    endpoint = await add_endpoint(client, receiver.url)
    owner = await sign_up(client)
    await make_loop(client, owner["token"])
    ctx = client.app[REST_CONTEXT]

    async def disabled() -> WebhookEndpoint | None:
        async with ctx.db.session() as session:
            row = await session.scalar(select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint.id))
        return row if row is not None and row.disabled_at is not None else None

    row = await until(disabled, timeout=15)
    assert row is not None and row.disabled_reason and "failing since" in row.disabled_reason
    metrics = await (await client.get("/metrics")).text()
    assert "musicplayground_webhook_endpoints_disabled_total 1.0" in metrics
    tries = len(receiver.received)
    await make_loop(client, owner["token"])
    await asyncio.sleep(1.0)
    assert len(receiver.received) == tries  # nothing more is sent to a disabled endpoint


async def test_redirects_are_not_followed(client: TestClient, receiver: Receiver) -> None:
    elsewhere = await add_endpoint(client, receiver.url)
    del elsewhere
    redirector = web.Application()

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(receiver.url)

    redirector.router.add_post("/hook", redirect)
    runner = web.AppRunner(redirector)
    await runner.setup()
    from tests.events.receiver import free_port

    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        bouncing = await add_endpoint(client, f"http://127.0.0.1:{port}/hook")
        owner = await sign_up(client)
        await make_loop(client, owner["token"])
        await eventually(lambda: len(receiver.received) == 1, timeout=10)  # the direct endpoint's

        async def attempted() -> list[dict[str, Any]]:
            return [r for r in await _deliveries(client, bouncing.id) if r["lastStatusCode"] is not None]

        [row] = await until(attempted)
        assert row["lastStatusCode"] == 307 and row["status"] == "pending"
        assert len(receiver.received) == 1  # the redirect was not followed
    finally:
        await runner.cleanup()


async def test_metrics_count_deliveries(client: TestClient, receiver: Receiver) -> None:
    await add_endpoint(client, receiver.url)
    owner = await sign_up(client)
    await make_loop(client, owner["token"])
    await eventually(lambda: receiver.received, timeout=10)
    await asyncio.sleep(0.3)
    metrics = await (await client.get("/metrics")).text()
    assert "musicplayground_webhook_deliveries_delivered_total 1.0" in metrics
    assert "musicplayground_events_queued" in metrics
    assert "musicplayground_events_oldest_pending_seconds" in metrics
