"""Hostile HTTP clients, round three (issue 25, the low findings 9, 10, 12-16): look-alike
usernames, NUL in URLs, other people's samples named in one's own loop, view counts by
User-Agent rotation, trickled bodies outside JSON validation, reports by purged accounts,
and a PATCH refused for a storage backlog. Real app, real sockets, SQLite and Postgres."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import pytest
from aiohttp.test_utils import TestClient
from pycrdt import Map
from sqlalchemy import delete
from yarl import URL

from rest.context import REST_CONTEXT
from settings import Settings
from storage.models import User
from tests.api.test_samples import uploaded
from tests.audio_fixtures import wav_bytes
from tests.community import account, create_document
from tests.helpers import eventually, expect_error
from tests.realtime.conftest import ClientFactory
from tests.realtime.test_cluster import _refuse_log_writes
from tests.sharing_helpers import share

BODY_TIMEOUT = 1.0
UPLOAD_TIMEOUT = 4.0
UPLOAD_MIN_RATE = 2000  # bytes/s
UPLOAD_WINDOW = 1.0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(
        http_body_timeout=BODY_TIMEOUT,
        upload_timeout=UPLOAD_TIMEOUT,
        upload_min_bytes_per_second=UPLOAD_MIN_RATE,
        upload_rate_window=UPLOAD_WINDOW,
        update_log_max_pending=1,
        view_count_flush_interval=3600.0,  # the tests flush
    )


# --- 9. usernames are matched whole ----------------------------------------------------------


@pytest.mark.parametrize("name", ["admin\n", "alice_1\n", "alice_1\r\n", "\nalice_1"])
async def test_a_username_with_a_newline_is_refused(client: TestClient, name: str) -> None:
    await account(client, "alice_1")
    mallory = await account(client)
    resp = await client.patch("/api/users/me", json={"username": name}, headers=mallory["headers"])
    body = await expect_error(resp, 400, "validation_error")
    assert "username" in body["error"]
    # Nor does such a name find anyone: no look-alike to fetch or add as a collaborator.
    loop = await create_document(client, mallory)
    resp = await client.post(
        f"/api/loops/{loop['id']}/collaborators",
        json={"username": name, "role": "editor"},
        headers=mallory["headers"],
    )
    await expect_error(resp, 400, "validation_error")
    me = await (await client.get("/api/users/me", headers=mallory["headers"])).json()
    assert me["username"] is None


# --- 10. NUL in paths and query strings ------------------------------------------------------


async def test_nul_in_any_path_or_query_is_a_400(client: TestClient) -> None:
    owner = await account(client)
    loop = await create_document(client, owner, isPublic=True)
    link = await share(client, "loops", loop["id"], owner["token"])
    token = link["shareToken"]
    requests = [
        ("GET", "/api/explore?q=%00"),
        ("GET", "/api/explore?q=ab%00cd&sort=views"),
        ("GET", f"/api/shared/{token}%00"),
        ("GET", f"/loop/{token}%00"),
        ("GET", f"/song/{token[:5]}%00x"),
        ("GET", f"/embed/{token}%00"),
        ("DELETE", f"/api/shares/{token}%00"),
        ("GET", "/api/users/ab%00cd"),
        ("GET", f"/api/loops/{loop['id']}?shareToken=x%00"),
        ("GET", f"/api/loops/{loop['id']}/comments?shareToken=x%00"),
        ("GET", "/api/loops?%00=1"),
        ("GET", "/no/such/route%00"),
    ]
    for method, target in requests:
        resp = await client.request(method, URL(target, encoded=True), headers=owner["headers"])
        body = await expect_error(resp, 400, "invalid_characters")
        assert "\x00" not in body["error"], target
    # Nothing was revoked, and the same requests without NUL work.
    assert (await client.get(f"/api/shared/{token}")).status == 200
    found = await (await client.get("/api/explore?q=zzz-no-such-loop")).json()
    assert found["items"] == []


# --- 12. a sample reference obeys the sample's access ----------------------------------------


async def test_someone_elses_sample_in_ones_own_loop_reveals_nothing(client: TestClient) -> None:
    victim, mallory = await account(client), await account(client)
    kick = await uploaded(client, victim["token"], wav_bytes(0.2), name="Secret kick")
    await expect_error(await client.get(f"/api/samples/{kick['id']}", headers=mallory["headers"]), 404)
    steps = [{"step": 0, "soundId": f"sample:{kick['id']}"}]
    stolen = await create_document(client, mallory, iconSequence=steps, isPublic=True)
    link = await share(client, "loops", stolen["id"], mallory["token"])
    missing = {"id": kick["id"], "name": None, "fileUrl": None, "duration": None, "missing": True}
    for headers in (mallory["headers"], None):
        got = await (await client.get(f"/api/loops/{stolen['id']}", headers=headers)).json()
        assert got["samples"] == [missing]
    shared = await (await client.get(f"/api/shared/{link['shareToken']}")).json()
    assert shared["data"]["samples"] == [missing]
    # Its owner reading that loop still hears their own sample.
    got = await (await client.get(f"/api/loops/{stolen['id']}", headers=victim["headers"])).json()
    assert got["samples"][0]["name"] == "Secret kick" and not got["samples"][0]["missing"]


async def test_a_fork_plays_the_samples_of_a_loop_its_reader_may_read(client: TestClient) -> None:
    author, forker = await account(client), await account(client)
    kick = await uploaded(client, author["token"], wav_bytes(0.2), name="Kick")
    steps = [{"step": 0, "soundId": f"sample:{kick['id']}"}]
    original = await create_document(client, author, iconSequence=steps, isPublic=True)
    resp = await client.post(f"/api/loops/{original['id']}/fork", headers=forker["headers"])
    assert resp.status == 201, await resp.text()
    fork = await resp.json()
    got = await (await client.get(f"/api/loops/{fork['id']}", headers=forker["headers"])).json()
    assert got["samples"][0]["name"] == "Kick" and not got["samples"][0]["missing"]
    # The author takes the original private: the fork no longer plays their sample.
    resp = await client.patch(
        f"/api/loops/{original['id']}", json={"isPublic": False}, headers=author["headers"]
    )
    assert resp.status == 200
    got = await (await client.get(f"/api/loops/{fork['id']}", headers=forker["headers"])).json()
    assert got["samples"][0]["missing"] is True


# --- 13. view counts do not follow the User-Agent ---------------------------------------------


async def test_rotating_the_user_agent_counts_one_view(client: TestClient) -> None:
    owner = await account(client)
    loop = await create_document(client, owner, isPublic=True)
    link = await share(client, "loops", loop["id"], owner["token"])
    for i in range(40):
        agent = {"User-Agent": f"browser-{i}"}
        target = f"/api/loops/{loop['id']}" if i % 2 else f"/api/shared/{link['shareToken']}"
        assert (await client.get(target, headers=agent)).status == 200
    views = client.app[REST_CONTEXT].views
    assert await views.flush() == 1
    got = await (await client.get(f"/api/loops/{loop['id']}", headers=owner["headers"])).json()
    assert got["viewCount"] == 1


# --- 14. every body has a deadline; uploads a minimum pace -----------------------------------


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP response: status and body (by Content-Length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    length = next(int(line.split(":")[1]) for line in lines if line.lower().startswith("content-length:"))
    return status, await reader.readexactly(length)


async def trickled(
    client: TestClient, head: bytes, body: bytes, *, interval: float, wait: float = 30
) -> tuple[int, bytes, float]:
    """Send ``head``, then ``body`` one byte per ``interval`` (repeating it), until the server
    answers; the answer and how long it took."""
    reader, writer = await asyncio.open_connection(client.host, client.port)

    async def drip() -> None:
        i = 0
        with contextlib.suppress(ConnectionError):  # the server may close once it has answered
            while True:
                writer.write(body[i % len(body) : i % len(body) + 1])
                await writer.drain()
                i += 1
                await asyncio.sleep(interval)

    started = time.monotonic()
    writer.write(head)
    dripping = asyncio.create_task(drip())
    try:
        async with asyncio.timeout(wait):
            status, answer = await read_response(reader)
        return status, answer, time.monotonic() - started
    finally:
        dripping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await dripping
        writer.close()


def json_head(path: str, token: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


@pytest.mark.parametrize("action", ["share", "fork"])
async def test_a_trickled_share_or_fork_body_times_out(client: TestClient, action: str) -> None:
    owner = await account(client)
    loop = await create_document(client, owner, isPublic=True)
    head = json_head(f"/api/loops/{loop['id']}/{action}", owner["token"], 1000)
    status, answer, took = await trickled(client, head, b'{"name": "x"}', interval=0.2)
    assert status == 408 and b"request_timeout" in answer, answer
    assert took < BODY_TIMEOUT + 5


def upload_head(token: str, length: int) -> tuple[bytes, bytes]:
    boundary = "trickle-boundary"
    head = (
        "POST /api/samples/upload HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()
    part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    return head, part


async def test_an_upload_below_the_minimum_rate_is_cut_off(client: TestClient) -> None:
    owner = await account(client)
    head, part = upload_head(owner["token"], 1_000_000)
    # 20 bytes/s against a minimum of 2,000: cut off once the window's credit is spent.
    status, answer, took = await trickled(client, head + part, wav_bytes(0.5), interval=0.05)
    assert status == 408 and b"upload_too_slow" in answer, answer
    assert took < UPLOAD_WINDOW + 5


async def test_an_upload_at_a_good_pace_still_has_a_total_time(client: TestClient) -> None:
    owner = await account(client)
    head, part = upload_head(owner["token"], 5_000_000)
    data = wav_bytes(4.0)

    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(head + part)

    async def pour() -> None:  # 20,000 bytes/s: ten times the minimum, never done in time
        with contextlib.suppress(ConnectionError):
            for start in range(0, len(data), 2000):
                writer.write(data[start : start + 2000])
                await writer.drain()
                await asyncio.sleep(0.1)

    started = time.monotonic()
    pouring = asyncio.create_task(pour())
    try:
        async with asyncio.timeout(30):
            status, answer = await read_response(reader)
    finally:
        pouring.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pouring
        writer.close()
    assert status == 408 and b"request_timeout" in answer, answer
    assert UPLOAD_TIMEOUT - 0.5 < time.monotonic() - started < UPLOAD_TIMEOUT + 5


async def test_a_normal_upload_is_untouched_by_the_pace(client: TestClient) -> None:
    owner = await account(client)
    sample = await uploaded(client, owner["token"], wav_bytes(1.0), name="fine")
    assert sample["name"] == "fine"


# --- 15. a purged account's report ------------------------------------------------------------


async def test_a_purged_accounts_report_is_not_a_conflict(client: TestClient) -> None:
    owner, reporter = await account(client), await account(client)
    loop = await create_document(client, owner, isPublic=True)
    async with client.app[REST_CONTEXT].db.write_session() as session:
        await session.execute(delete(User).where(User.id == uuid.UUID(reporter["user"]["id"])))
    report = {"resourceType": "loop", "resourceId": loop["id"], "reason": "spam"}
    resp = await client.post("/api/reports", json=report, headers=reporter["headers"])
    body = await expect_error(resp, 401)
    assert "no longer exists" in body["error"]
    # Reporting a purged account: it is gone (404), not "already reported".
    other = await account(client)
    report = {"resourceType": "user", "resourceId": reporter["user"]["id"], "reason": "spam"}
    await expect_error(await client.post("/api/reports", json=report, headers=other["headers"]), 404)
    # A real second report of the same thing is still the conflict it is.
    report = {"resourceType": "loop", "resourceId": loop["id"], "reason": "spam"}
    assert (await client.post("/api/reports", json=report, headers=other["headers"])).status == 201
    await expect_error(await client.post("/api/reports", json=report, headers=other["headers"]), 409)


# --- 16. a storage backlog is a 503 with Retry-After ------------------------------------------


async def test_a_patch_refused_for_a_storage_backlog_is_503_with_retry_after(
    client: TestClient, connect: ClientFactory, settings: Settings
) -> None:
    owner = await account(client)
    loop = await create_document(client, owner)
    editor = await connect(loop["id"], token=owner["token"])
    update_log = client.app[REST_CONTEXT].documents.update_log
    await _refuse_log_writes(settings.database_url, True)
    try:
        editor.doc.get("meta", type=Map)["name"] = "waiting for the database"
        # UPDATE_LOG_MAX_PENDING is 1 here: that edit, retried, fills the log.
        await eventually(lambda: update_log.retries >= 1 and update_log.full, timeout=10)
        resp = await client.patch(
            f"/api/loops/{loop['id']}", json={"name": "refused"}, headers=owner["headers"]
        )
        body = await expect_error(resp, 503, "storage_backlog")
        assert int(resp.headers["Retry-After"]) >= 1
        assert "too large" not in body["error"]
    finally:
        await _refuse_log_writes(settings.database_url, False)
    await eventually(lambda: not update_log.full, timeout=15)
    resp = await client.patch(f"/api/loops/{loop['id']}", json={"name": "accepted"}, headers=owner["headers"])
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["name"] == "accepted"
