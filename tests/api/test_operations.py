"""What an operator sees: readiness checks, metrics, request ids, one JSON format, token errors."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pycrdt import Map
from sqlalchemy import update

from loadtest.client import CollabClient, CollabConnectionRefused
from musicplayground.app import PURGE_HOOK
from musicplayground.observability import METRICS, JsonFormatter, RequestIdFilter
from settings import Settings
from storage.models import User, utcnow
from storage.purge import purge_anonymous_accounts
from tests.helpers import LOOP, bearer, eventually, expect_error, samples, sign_up


async def scrape(client: TestClient, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = await client.get("/metrics", headers=headers)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("text/plain")
    return samples(await resp.text())


async def test_readiness_is_a_list_of_named_checks(client: TestClient, backend: str) -> None:
    resp = await client.get("/readyz")
    body = await resp.json()
    assert resp.status == 200, body
    checks = {c["name"]: c for c in body["checks"]}
    assert {"database", "bus", "update_log"} <= set(checks)
    assert all(c["status"] == "ok" for c in checks.values())
    assert checks["database"]["detail"].startswith(backend)
    assert checks["bus"]["detail"] == "MemoryBus, 0 outages"  # in-process without REDIS_URL


async def test_readiness_fails_when_the_update_log_stops(client: TestClient) -> None:
    await client.app[METRICS].components.update_log.stop()
    body = await expect_error(await client.get("/readyz"), 503, "not_ready")
    assert "update_log" in body["error"]
    failing = {c["name"]: c for c in body["details"] if c["status"] == "failing"}
    assert set(failing) == {"update_log"} and "not running" in failing["update_log"]["detail"]
    assert (await client.get("/healthz")).status == 200  # alive, just not ready


async def test_metrics_cover_http_sockets_rooms_updates_and_the_log(client: TestClient) -> None:
    owner = await sign_up(client)
    resp = await client.post("/api/loops", json=LOOP, headers=bearer(owner["token"]))
    loop = await resp.json()
    await client.get(f"/api/loops/{loop['id']}", headers=bearer(owner["token"]))
    await client.get("/no/such/page")
    base_url = str(client.make_url("")).rstrip("/")
    editor = CollabClient(base_url, "loop", loop["id"], token=owner["token"])
    await editor.connect()
    try:
        editor.doc.get("meta", type=Map)["name"] = "edited live"
        await eventually(lambda: client.app[METRICS].components.documents.updates_relayed >= 1)
        await editor.emit_raw("sync-update", "not bytes")
        await editor.wait_for(lambda: any(e.get("code") == "malformed_update" for e in editor.errors))
        found = await scrape(client)
    finally:
        await editor.close()

    def value(name: str, **labels: str) -> float:
        return found.get((name, tuple(sorted(labels.items()))), 0.0)

    requests_total = "musicplayground_http_requests_total"
    assert value(requests_total, route="/api/loops", method="POST", status="201") == 1
    assert value(requests_total, route="/api/loops/{id}", method="GET", status="200") == 1
    assert value(requests_total, route="unmatched", method="GET", status="404") == 1
    count = "musicplayground_http_request_duration_seconds_count"
    assert value(count, route="/api/loops", method="POST") == 1
    assert value("musicplayground_sockets_connected") == 1
    assert value("musicplayground_rooms_loaded") == 1
    assert value("musicplayground_updates_applied_total") >= 1
    assert value("musicplayground_updates_relayed_total") >= 1
    assert value("musicplayground_updates_refused_total", reason="malformed_update") == 1
    assert value("musicplayground_update_log_batch_size_count") >= 1
    assert value("musicplayground_update_log_commit_seconds_count") >= 1
    # Defined for the parts that feed them (bus, rate limits) even before they report.
    assert ("musicplayground_bus_messages_total", (("direction", "in"),)) in found
    assert ("musicplayground_bus_lag_seconds_count", ()) in found
    assert value("musicplayground_cache_misses_total", cache="document_reads") >= 1


async def test_snapshots_are_measured(client: TestClient) -> None:
    owner = await sign_up(client)
    loop = await (await client.post("/api/loops", json=LOOP, headers=bearer(owner["token"]))).json()
    editor = CollabClient(str(client.make_url("")).rstrip("/"), "loop", loop["id"], token=owner["token"])
    await editor.connect()
    editor.doc.get("meta", type=Map)["name"] = "to be folded"
    await eventually(lambda: client.app[METRICS].components.documents.updates_relayed >= 1)
    await editor.close()  # the last client leaving snapshots the document
    documents = client.app[METRICS].components.documents
    await eventually(lambda: all(room.version == room.persisted_version for room in documents.rooms.values()))
    found = await scrape(client)
    assert found[("musicplayground_snapshot_duration_seconds_count", ())] >= 1
    assert found[("musicplayground_snapshot_bytes_sum", ())] > 0


async def test_event_loop_lag_is_measured(client: TestClient) -> None:
    """A stall of the loop shows in ``musicplayground_event_loop_lag_seconds``: the sampler's
    timer runs late by as much."""
    lag = client.app[METRICS].loop_lag
    await eventually(lambda: _count(lag) >= 1)  # it samples from the start
    time.sleep(0.3)  # noqa: ASYNC251 - the stall being measured
    await eventually(lambda: _count(lag) >= 3)
    found = await scrape(client)
    assert found[("musicplayground_event_loop_lag_seconds_sum", ())] >= 0.15
    assert found[("musicplayground_event_loop_lag_seconds_bucket", (("le", "0.1"),))] < _count(lag)


def _count(histogram: Any) -> float:
    return next(s.value for m in histogram.collect() for s in m.samples if s.name.endswith("_count"))


@pytest.fixture
def protected(settings: Settings) -> Settings:
    return settings.replace(metrics_token="scrape-me-0123456789")


async def test_metrics_token(aiohttp_client: Any, protected: Settings) -> None:
    from musicplayground.app import create_app

    client = await aiohttp_client(create_app(protected))
    await expect_error(await client.get("/metrics"), 401, "unauthorized")
    await expect_error(
        await client.get("/metrics", headers={"Authorization": "Bearer wrong"}), 401, "unauthorized"
    )
    found = await scrape(client, Authorization="Bearer scrape-me-0123456789")
    assert any(name == "musicplayground_http_requests_total" for name, _ in found)


async def test_request_id_is_returned_and_logged(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.handler.addFilter(RequestIdFilter())
    with caplog.at_level(logging.INFO, logger="musicplayground.access"):
        fresh = await client.get("/healthz")
        kept = await client.get("/healthz", headers={"X-Request-Id": "lb-7f3a9c21-0001"})
        junk = await client.get("/healthz", headers={"X-Request-Id": "x" * 500})
    generated = fresh.headers["X-Request-Id"]
    assert len(generated) == 32 and generated != junk.headers["X-Request-Id"]
    assert kept.headers["X-Request-Id"] == "lb-7f3a9c21-0001"
    assert len(junk.headers["X-Request-Id"]) == 32
    access = [r for r in caplog.records if r.name == "musicplayground.access"]
    assert [r.request_id for r in access] == [  # type: ignore[attr-defined]
        generated,
        "lb-7f3a9c21-0001",
        junk.headers["X-Request-Id"],
    ]
    assert all(r.status == 200 and '"GET /healthz"' in r.getMessage() for r in access)  # type: ignore[attr-defined]
    line = json.loads(JsonFormatter().format(access[1]))
    assert line["request_id"] == "lb-7f3a9c21-0001" and line["level"] == "INFO"
    assert line["logger"] == "musicplayground.access" and line["status"] == 200


async def test_every_json_response_has_one_format(client: TestClient) -> None:
    owner = await sign_up(client)
    responses = [
        await client.get("/healthz"),
        await client.get("/readyz"),
        await client.get("/api/openapi.json"),
        await client.get("/api/users/me", headers=bearer(owner["token"])),
        await client.post("/api/loops", json=LOOP, headers=bearer(owner["token"])),
        await client.get("/api/loops", headers=bearer(owner["token"])),
        await client.get("/api/loops/not-a-uuid"),
        await client.get("/nowhere"),
    ]
    for resp in responses:
        assert resp.headers["Content-Type"] == "application/json; charset=utf-8", resp.url
        raw = await resp.read()
        assert b'", "' not in raw and b'": ' not in raw, raw[:200]  # compact everywhere
        json.loads(raw)


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("abc", "three dot-separated parts, this one has 1"),
        ('"eyJ.eyJ.sig"', "non-empty base64url"),
        ("a.b", "this one has 2"),
        ("eyJub3QganNvbg.e30.c2ln", "header is not base64url-encoded JSON"),
    ],
)
async def test_a_malformed_bearer_token_is_explained(client: TestClient, token: str, reason: str) -> None:
    body = await expect_error(await client.get("/api/users/me", headers=bearer(token)), 401, "invalid_token")
    assert reason in body["error"] and "Firebase" not in body["error"].split(";")[0]
    with pytest.raises(CollabConnectionRefused, match=reason):
        await CollabClient(str(client.make_url("")).rstrip("/"), "loop", LOOP_ID, token=token).connect()


LOOP_ID = "00000000-0000-4000-8000-000000000001"


async def test_a_refresh_token_sent_as_bearer_is_named(client: TestClient) -> None:
    owner = await sign_up(client)
    body = await expect_error(
        await client.get("/api/users/me", headers=bearer(owner["refreshToken"])), 401, "invalid_token"
    )
    assert "looks like a refresh token" in body["error"]


async def test_nul_characters_are_a_400_not_a_database_error(client: TestClient) -> None:
    # Found by the schemathesis run: Postgres text cannot hold U+0000.
    owner = await sign_up(client)
    nested = {**LOOP, "chordProgression": [{"bar": 0, "chord": "C\u0000"}]}
    for body in ({**LOOP, "name": "bad\u0000name"}, nested):
        resp = await client.post("/api/loops", json=body, headers=bearer(owner["token"]))
        failure = await expect_error(resp, 400, "validation_error")
        assert "NUL" in failure["error"]


async def test_a_purged_public_loop_is_not_served_from_the_cache(client: TestClient) -> None:
    owner = await sign_up(client)
    resp = await client.post("/api/loops", json={**LOOP, "isPublic": True}, headers=bearer(owner["token"]))
    loop = await resp.json()
    for _ in range(2):  # the second read is answered from the read cache
        assert (await client.get(f"/api/loops/{loop['id']}")).status == 200
    documents = client.app[METRICS].components.documents
    assert documents.read_cache.hits >= 1
    async with documents.db.write_session() as session:
        await session.execute(
            update(User)
            .where(User.id == uuid.UUID(owner["user"]["id"]))
            .values(last_seen_at=utcnow() - timedelta(days=365))
        )
    purged = await purge_anonymous_accounts(documents.db, inactive_days=90, on_purged=client.app[PURGE_HOOK])
    assert [str(a.user_id) for a in purged] == [owner["user"]["id"]]
    await expect_error(await client.get(f"/api/loops/{loop['id']}"), 404, "not_found")


async def test_metrics_count_rate_limit_refusals_and_bus_traffic(
    aiohttp_client: Any, settings: Settings, redis_url: str
) -> None:
    """Two apps on one Redis: bus messages go out on one and come in on the other, and a
    refused request shows up as a rate-limit refusal."""
    from musicplayground.app import create_app

    shared = settings.replace(
        rate_limit_get_per_hour=2, redis_url=redis_url, redis_prefix=f"test-{uuid.uuid4()}:"
    )
    one = await aiohttp_client(create_app(shared))
    two = await aiohttp_client(create_app(shared))
    auth = bearer((await sign_up(one))["token"])
    created = await one.post("/api/loops", json={**LOOP, "isPublic": True}, headers=auth)
    path = f"/api/loops/{(await created.json())['id']}"
    assert (await two.get(path)).status == 200  # instance two caches it
    assert (await one.patch(path, json={"name": "Renamed"}, headers=auth)).status == 200
    for _ in range(2):
        assert (await one.get("/api/loops", headers=auth)).status == 200
    assert (await one.get("/api/loops", headers=auth)).status == 429

    async def bus_counts() -> tuple[float, float]:
        sent = await scrape(one)
        received = await scrape(two)
        return (
            sent.get(("musicplayground_bus_messages_total", (("direction", "out"),)), 0.0),
            received.get(("musicplayground_bus_messages_total", (("direction", "in"),)), 0.0),
        )

    for _ in range(100):  # the bus delivers asynchronously
        out, received = await bus_counts()
        if out >= 1 and received >= 1:
            break
        await asyncio.sleep(0.05)
    assert out >= 1 and received >= 1
    lag = (await scrape(two)).get(("musicplayground_bus_lag_seconds_count", ()), 0.0)
    assert lag >= received  # every received message has its lag measured
    found = await scrape(one)
    assert found[("musicplayground_rate_limit_refusals_total", (("limit", "get"),))] == 1
