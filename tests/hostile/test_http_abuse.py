"""Hostile HTTP clients and unstorable content (issue 6): NUL characters on both databases,
oversized documents through REST, malformed HTTP, trickling clients, token details."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient
from pycrdt import Map
from sqlalchemy import delete

from identity.tokens import AUDIENCE, ISSUER, KEY_ID
from music.kinds import DocKind
from music.schema import DEFAULT_NAME
from rest.context import REST_CONTEXT
from settings import Settings
from storage import document_store as stored
from storage.models import User
from tests.conftest import TEST_SECRET
from tests.helpers import LOOP, SONG, bearer, eventually, expect_error, sign_up
from tests.hostile.conftest import HealthyDuring, room_still_works
from tests.realtime.conftest import ClientFactory


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(
        snapshot_interval=0.3, max_document_bytes=64 * 1024, http_idle_timeout=1.0, http_body_timeout=1.0
    )


# --- 5. NUL and other unstorable characters ---------------------------------------------------

NUL_LOOPS = [
    {**LOOP, "name": "nul\u0000name"},
    {**LOOP, "chordProgression": [{"bar": 0, "chord": "C\u0000"}]},
    {**LOOP, "iconSequence": [{"step": 0, "soundId": "kick\u0000"}]},
]


@pytest.mark.parametrize("body", NUL_LOOPS, ids=["name", "chord", "soundId"])
async def test_nul_is_refused_on_create_and_update(
    client: TestClient, owner: dict[str, Any], loop: dict[str, Any], body: dict[str, Any]
) -> None:
    headers = bearer(owner["token"])
    await expect_error(await client.post("/api/loops", json=body, headers=headers), 400, "validation_error")
    changed = {k: v for k, v in body.items() if body[k] != LOOP[k]}
    resp = await client.patch(f"/api/loops/{loop['id']}", json=changed, headers=headers)
    await expect_error(resp, 400, "validation_error")
    # The refused write never reached the live document.
    after = await (await client.get(f"/api/loops/{loop['id']}", headers=headers)).json()
    assert {k: after[k] for k in changed} == {k: loop[k] for k in changed}


async def test_nul_in_a_song_block_id_is_refused(client: TestClient, owner: dict[str, Any]) -> None:
    song = {**SONG, "timeline": [{"id": "b\u0000", "loopId": "x", "startBar": 0, "duration": 4}]}
    resp = await client.post("/api/songs", json=song, headers=bearer(owner["token"]))
    await expect_error(resp, 400, "validation_error")


async def test_unstorable_text_through_the_socket_does_not_poison_snapshots(
    client: TestClient,
    connect: ClientFactory,
    owner: dict[str, Any],
    loop: dict[str, Any],
    healthy_during: HealthyDuring,
) -> None:
    a = await connect(loop["id"], token=owner["token"])
    b = await connect(loop["id"], token=owner["token"])
    ctx = client.app[REST_CONTEXT]
    async with healthy_during():
        a.doc.get("meta", type=Map)["name"] = "bad\u0000name"
        a.doc.get("steps", type=Map)['[9,null,"x\\u0000",null]'] = Map({"step": 9, "soundId": "x\u0000"})
        await eventually(lambda: b.doc.get("meta", type=Map).get("name") == "bad\u0000name")

        async def snapshotted() -> bool:
            async with ctx.db.session() as session:
                return not await stored.has_unsnapshotted_updates(
                    session, resource_type="loop", resource_id=uuid.UUID(loop["id"])
                )

        # The snapshot succeeds (on Postgres too): what cannot be stored is left out of the
        # JSON columns, and the Yjs state is stored as bytes, losslessly.
        deadline = time.monotonic() + 10
        while not await snapshotted():
            assert time.monotonic() < deadline, "the snapshot never succeeded"
            await asyncio.sleep(0.1)
    resp = await client.get(f"/api/loops/{loop['id']}", headers=bearer(owner["token"]))
    body = await resp.text()
    assert resp.status == 200 and "\\u0000" not in body
    assert (await resp.json())["name"] == DEFAULT_NAME
    await room_still_works(a, b, "a clean name")


# --- 4. REST honours the document size limit --------------------------------------------------


async def test_rest_patch_honours_the_document_size_limit(
    client: TestClient, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    headers = bearer(owner["token"])
    steps = [{"step": i % 64, "soundId": f"sound-{i // 64:03d}-" + "x" * 40} for i in range(2048)]
    resp = await client.patch(f"/api/loops/{loop['id']}", json={"iconSequence": steps}, headers=headers)
    await expect_error(resp, 413, "document_too_large")
    after = await (await client.get(f"/api/loops/{loop['id']}", headers=headers)).json()
    assert after["iconSequence"] == loop["iconSequence"]
    resp = await client.patch(f"/api/loops/{loop['id']}", json={"name": "still editable"}, headers=headers)
    assert resp.status == 200


# --- 9. a flush with no edit leaves updatedAt alone ------------------------------------------


async def test_a_snapshot_without_an_edit_does_not_move_updated_at(
    client: TestClient, connect: ClientFactory, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    headers = bearer(owner["token"])
    before = (await (await client.get(f"/api/loops/{loop['id']}", headers=headers)).json())["updatedAt"]
    await connect(loop["id"], token=owner["token"])  # the room is open, nobody edits
    documents = client.app[REST_CONTEXT].documents
    room = documents.loaded(DocKind.LOOP, uuid.UUID(loop["id"]))
    assert room is not None
    await asyncio.sleep(0.05)
    await documents.snapshot(room)  # what the shutdown flush does
    documents.read_cache.invalidate("loop", room.doc_id)
    after = (await (await client.get(f"/api/loops/{loop['id']}", headers=headers)).json())["updatedAt"]
    assert after == before


# --- 10. details ---------------------------------------------------------------------------------


async def test_a_deleted_users_token_is_refused_by_the_listing(client: TestClient) -> None:
    gone = await sign_up(client)
    async with client.app[REST_CONTEXT].db.write_session() as session:
        await session.execute(delete(User).where(User.id == uuid.UUID(gone["user"]["id"])))
    await expect_error(await client.get("/api/loops", headers=bearer(gone["token"])), 401)
    await expect_error(await client.get("/api/songs", headers=bearer(gone["token"])), 401)
    alive = await sign_up(client)
    resp = await client.get("/api/loops", headers=bearer(alive["token"]))
    assert resp.status == 200 and (await resp.json())["loops"] == []


@pytest.mark.parametrize("claim", ["exp", "iat"])
async def test_jwt_dates_given_as_strings_are_refused(client: TestClient, claim: str) -> None:
    account = await sign_up(client)
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": account["user"]["id"],
        "iat": now,
        "exp": now + 600,
        "typ": "access",
        "anon": True,
    }
    claims[claim] = str(claims[claim])
    token = jwt.encode(claims, TEST_SECRET, algorithm="HS256", headers={"kid": KEY_ID})
    await expect_error(await client.get("/api/users/me", headers=bearer(token)), 401, "invalid_token")


async def test_bad_path_ids_are_echoed_bounded(client: TestClient, owner: dict[str, Any]) -> None:
    body = await expect_error(await client.get("/api/loops/" + "z" * 5000), 400, "validation_error")
    assert len(body["error"]) < 200


async def test_the_server_header_reveals_no_version(client: TestClient) -> None:
    resp = await client.get("/healthz")
    assert "aiohttp" not in resp.headers.get("Server", "").lower()
    assert "python" not in resp.headers.get("Server", "").lower()


# --- 8. malformed HTTP and trickling clients -----------------------------------------------------


async def raw_request(client: TestClient, data: bytes, *, wait: float = 10) -> bytes:
    """Send raw bytes on a fresh connection; what the server answered before closing it."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(wait):
            return await reader.read()
    finally:
        writer.close()


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n",
        b"GET /\x01bad HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n",
    ],
    ids=["oversized-header", "invalid-bytes", "garbage"],
)
async def test_malformed_http_is_one_warning_line(
    client: TestClient, caplog: pytest.LogCaptureFixture, request_bytes: bytes
) -> None:
    with caplog.at_level(logging.DEBUG, logger="aiohttp.server"):
        answer = await raw_request(client, request_bytes)
        await asyncio.sleep(0.05)
    assert answer == b"" or (answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n")[0])
    server_records = [r for r in caplog.records if r.name == "aiohttp.server" and r.levelno > logging.DEBUG]
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in server_records), server_records
    assert (await client.get("/healthz")).status == 200


async def test_half_sent_headers_are_dropped_after_the_idle_timeout(client: TestClient) -> None:
    # 1 s idle timeout in this module; the connection must be closed by the server, not by us.
    answer = await raw_request(client, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ", wait=15)
    assert answer == b""


async def test_a_trickled_body_times_out(client: TestClient, owner: dict[str, Any]) -> None:
    token = owner["token"]
    head = (
        "POST /api/loops HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: 1000\r\n\r\n"
    ).encode()
    answer = await raw_request(client, head + b'{"name": ', wait=15)
    assert b" 408 " in answer.split(b"\r\n")[0], answer[:200]
    assert b"request_timeout" in answer
