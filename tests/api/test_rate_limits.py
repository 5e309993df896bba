"""Rate limits over HTTP and Socket.IO: quotas, headers, per-IP abuse limits, Redis sharing, failing open."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import pytest

from loadtest.client import CollabClient, CollabConnectionError, namespace_for
from musicplayground.app import create_app
from settings import Settings
from tests.helpers import LOOP, bearer, expect_error, sign_up
from tests.hostile.wire import RawSocket
from tests.server_process import free_port


def rate_headers(resp: Any) -> tuple[int, int, int]:
    return (
        int(resp.headers["RateLimit-Limit"]),
        int(resp.headers["RateLimit-Remaining"]),
        int(resp.headers["RateLimit-Reset"]),
    )


async def test_reads_are_limited_per_user_with_headers_and_retry_after(
    aiohttp_client: Any, settings: Settings
) -> None:
    client = await aiohttp_client(create_app(settings.replace(rate_limit_get_per_hour=3)))
    alice, bob = await sign_up(client), await sign_up(client)
    remaining = []
    for _ in range(3):
        resp = await client.get("/api/loops", headers=bearer(alice["token"]))
        assert resp.status == 200
        limit, left, reset = rate_headers(resp)
        assert limit == 3 and 0 <= reset <= 3600
        remaining.append(left)
    assert remaining == [2, 1, 0]
    refused = await client.get("/api/loops", headers=bearer(alice["token"]))
    body = await expect_error(refused, 429, "rate_limited")
    assert "retry in" in body["error"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 3600
    assert rate_headers(refused)[:2] == (3, 0)
    # Another user has a budget of their own.
    assert (await client.get("/api/loops", headers=bearer(bob["token"]))).status == 200


async def test_mutations_have_their_own_budget_and_errors_carry_headers(
    aiohttp_client: Any, settings: Settings
) -> None:
    client = await aiohttp_client(create_app(settings.replace(rate_limit_mutations_per_hour=2)))
    user = await sign_up(client)  # counted per IP: no token yet
    auth = bearer(user["token"])
    assert (await client.post("/api/loops", json=LOOP, headers=auth)).status == 201
    bad = await client.post("/api/loops", json={"name": "x"}, headers=auth)
    await expect_error(bad, 400)
    assert rate_headers(bad)[:2] == (2, 0)
    await expect_error(await client.post("/api/loops", json=LOOP, headers=auth), 429, "rate_limited")
    missing = await client.get(f"/api/loops/{uuid.uuid4()}", headers=auth)
    await expect_error(missing, 404)
    assert rate_headers(missing)[0] == settings.rate_limit_get_per_hour


async def test_uploads_count_against_uploads_and_mutations(aiohttp_client: Any, settings: Settings) -> None:
    client = await aiohttp_client(create_app(settings.replace(rate_limit_uploads_per_hour=1)))
    auth = bearer((await sign_up(client))["token"])
    first = await client.post("/api/samples/upload", data=b"RIFF", headers=auth)
    assert first.status != 429
    assert rate_headers(first)[:2] == (1, 0)  # the uploads quota is the one nearest exhaustion
    await expect_error(await client.post("/api/samples/upload", data=b"RIFF", headers=auth), 429)
    assert (await client.post("/api/loops", json=LOOP, headers=auth)).status == 201


async def test_anonymous_sign_ups_are_limited_per_client_ip(aiohttp_client: Any, settings: Settings) -> None:
    client = await aiohttp_client(
        create_app(settings.replace(rate_limit_anonymous_accounts_per_ip_per_hour=2))
    )
    await sign_up(client)
    await sign_up(client)
    await expect_error(await client.post("/api/auth/anonymous"), 429, "rate_limited")
    # Without trusted proxies, X-Forwarded-For is the client's word and is ignored.
    spoofed = await client.post("/api/auth/anonymous", headers={"X-Forwarded-For": "203.0.113.9"})
    await expect_error(spoofed, 429)


async def test_forwarded_for_is_believed_behind_a_trusted_proxy(
    aiohttp_client: Any, settings: Settings
) -> None:
    client = await aiohttp_client(
        create_app(
            settings.replace(
                rate_limit_anonymous_accounts_per_ip_per_hour=1, trusted_proxies=("127.0.0.0/8",)
            )
        )
    )
    one = {"X-Forwarded-For": "198.51.100.1"}
    assert (await client.post("/api/auth/anonymous", headers=one)).status == 201
    await expect_error(await client.post("/api/auth/anonymous", headers=one), 429)
    # A client-written hop left of the proxy's entry does not buy a new budget.
    forged = {"X-Forwarded-For": "192.0.2.50, 198.51.100.1"}
    await expect_error(await client.post("/api/auth/anonymous", headers=forged), 429)
    other = {"X-Forwarded-For": "198.51.100.2"}
    assert (await client.post("/api/auth/anonymous", headers=other)).status == 201


async def test_rate_limits_off_sends_no_headers_and_refuses_nothing(
    aiohttp_client: Any, settings: Settings
) -> None:
    client = await aiohttp_client(
        create_app(settings.replace(rate_limits_enabled=False, rate_limit_get_per_hour=1))
    )
    auth = bearer((await sign_up(client))["token"])
    for _ in range(3):
        resp = await client.get("/api/loops", headers=auth)
        assert resp.status == 200 and "RateLimit-Limit" not in resp.headers
    ready = await (await client.get("/readyz")).json()
    assert rate_limit_check(ready) == {"name": "rate_limits", "status": "ok", "detail": "off"}


def rate_limit_check(readiness: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in readiness["checks"] if c["name"] == "rate_limits")


async def test_probes_are_never_limited(aiohttp_client: Any, settings: Settings) -> None:
    client = await aiohttp_client(create_app(settings.replace(rate_limit_get_per_hour=1)))
    for path in ["/healthz", "/readyz", "/api/openapi.json"] * 2:
        resp = await client.get(path)
        assert resp.status == 200 and "RateLimit-Limit" not in resp.headers


async def test_two_instances_on_one_redis_share_the_limits(
    aiohttp_client: Any, settings: Settings, redis_url: str
) -> None:
    shared = settings.replace(
        rate_limit_get_per_hour=3, redis_url=redis_url, redis_prefix=f"test-{uuid.uuid4()}:"
    )
    one = await aiohttp_client(create_app(shared))
    two = await aiohttp_client(create_app(shared))
    auth = bearer((await sign_up(one))["token"])
    assert (await one.get("/api/loops", headers=auth)).status == 200
    assert (await two.get("/api/loops", headers=auth)).status == 200
    last = await one.get("/api/loops", headers=auth)
    assert last.status == 200 and rate_headers(last)[1] == 0
    await expect_error(await two.get("/api/loops", headers=auth), 429, "rate_limited")
    ready = await (await two.get("/readyz")).json()
    assert rate_limit_check(ready)["detail"] == "ok (redis)"


async def test_redis_down_fails_open_and_readyz_says_so(aiohttp_client: Any, settings: Settings) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    client = await aiohttp_client(create_app(settings.replace(rate_limit_get_per_hour=1, redis_url=dead)))
    auth = bearer((await sign_up(client))["token"])
    for _ in range(3):
        resp = await client.get("/api/loops", headers=auth)
        assert resp.status == 200 and "RateLimit-Limit" not in resp.headers
    ready = await client.get("/readyz")
    assert ready.status == 200  # failing open: taking instances out of the pool would not help
    check = rate_limit_check(await ready.json())
    assert check["status"] == "degraded" and check["detail"].startswith("failing open: redis unavailable")


async def test_socket_connection_attempts_are_limited_per_ip(aiohttp_client: Any, settings: Settings) -> None:
    """Each new Engine.IO session counts (at its handshake, 429 past the limit), and so does
    each namespace connect after a session's first (refused with connect_error)."""
    client = await aiohttp_client(
        create_app(settings.replace(rate_limit_socket_connects_per_ip_per_minute=3))
    )
    owner = await sign_up(client)
    auth = {"token": owner["token"]}
    loop = await (await client.post("/api/loops", json=LOOP, headers=bearer(owner["token"]))).json()
    other = await (await client.post("/api/loops", json=LOOP, headers=bearer(owner["token"]))).json()
    first, second = namespace_for("loop", loop["id"]), namespace_for("loop", other["id"])
    base = str(client.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as http:
        a = await RawSocket.open(http, base)  # 1 of 3
        await a.connect_namespace(first, auth)  # the session's first: counted with it
        await a.connect_namespace(second, auth)  # 2 of 3
        b = await RawSocket.open(http, base)  # 3 of 3
        await b.connect_namespace(first, auth)
        with pytest.raises(ConnectionRefusedError, match="too many connection attempts"):
            await b.connect_namespace(second, auth)
        with pytest.raises(aiohttp.WSServerHandshakeError) as handshake:
            await RawSocket.open(http, base)
        assert handshake.value.status == 429
        assert handshake.value.headers is not None and int(handshake.value.headers["Retry-After"]) >= 1
        refused = CollabClient(base, "loop", loop["id"], token=owner["token"])
        with pytest.raises(CollabConnectionError, match="cannot connect"):
            await refused.connect()
        await a.close()
        await b.close()
