"""The y-websocket wire: the same rooms, rights and limits as the Socket.IO wire. Real server,
real WebSockets, both databases; the stock npm client is in test_ywebsocket_interop.py."""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from pycrdt import Map, YSyncMessageType

from loadtest.client import AWARENESS_UPDATE, CollabClient
from music.schema import step_key
from musicplayground.app import create_app
from realtime.ywebsocket import protocol
from realtime.ywebsocket.close_codes import CloseCode
from settings import Settings
from tests.helpers import LOOP, bearer, eventually, samples, sign_up
from tests.realtime.conftest import ClientFactory
from tests.sharing_helpers import add_collaborator, named_user, share
from tests.ywebsocket_client import YwsClient


async def yws(base_url: str, name: str, **params: str) -> YwsClient:
    return await YwsClient(base_url, name, **params).connect()


async def test_both_wires_edit_one_room_and_rest_reads_it(
    client: TestClient, base_url: str, connect: ClientFactory, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    name = f"loop:{loop['id']}"
    a = await yws(base_url, name, token=owner["token"])
    b = await yws(base_url, name, token=owner["token"])
    sio = await connect(loop["id"], token=owner["token"])
    try:
        assert a.synced and a.meta()["name"] == loop["name"]
        a.meta()["name"] = "From y-websocket"
        await eventually(lambda: b.meta().get("name") == "From y-websocket")
        await eventually(lambda: sio.doc.get("meta", type=Map).get("name") == "From y-websocket")
        sio.doc.get("meta", type=Map)["bpm"] = 133
        await eventually(lambda: a.meta().get("bpm") == 133 and b.meta().get("bpm") == 133)
        resp = await client.get(f"/api/loops/{loop['id']}", headers=bearer(owner["token"]))
        body = await resp.json()
        assert (body["name"], body["bpm"]) == ("From y-websocket", 133)
    finally:
        await a.close()
        await b.close()


async def test_awareness_is_shared_across_wires(
    base_url: str, connect: ClientFactory, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    sio = await connect(loop["id"], token=owner["token"])
    a = await yws(base_url, f"loop:{loop['id']}", token=owner["token"])
    try:
        sio.set_awareness({"user": {"name": "sio"}})
        await eventually(lambda: any(b"sio" in update for update in a.awareness))
        # And the other way: a raw awareness update from the y-websocket side.
        state = json.dumps({"user": {"name": "yws"}})  # client id 123456: a uint32, as Yjs makes them
        update = bytes([1]) + _var_uint(123456) + _var_uint(1) + _var_string(state)
        await a.send(protocol.awareness_message(update))
        await eventually(
            lambda: any(s.get("user", {}).get("name") == "yws" for s in sio.remote_awareness().values())
        )
    finally:
        await a.close()


async def test_refusals_close_with_their_codes(
    client: TestClient, base_url: str, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    name = f"loop:{loop['id']}"
    cases = [
        (YwsClient(base_url, name), CloseCode.UNAUTHENTICATED),  # its first message is no auth message
        (YwsClient(base_url, "loop:not-an-id", token=owner["token"]), CloseCode.BAD_REQUEST),
        (YwsClient(base_url, name, token="junk"), CloseCode.UNAUTHENTICATED),
        (YwsClient(base_url, name, shareToken="no-such-link"), CloseCode.NOT_FOUND),
    ]
    stranger = await sign_up(client)
    cases.append((YwsClient(base_url, name, token=stranger["token"]), CloseCode.NOT_FOUND))
    for c, code in cases:
        try:
            await c.connect(wait_synced=False)
            assert await c.wait_closed() == code, c.url
            assert not c.synced
        finally:
            await c.close()


async def test_no_auth_message_in_time_closes_4408(aiohttp_client: Any, settings: Settings) -> None:
    server = await aiohttp_client(create_app(dataclasses.replace(settings, socket_connect_timeout=0.5)))
    c = YwsClient(str(server.make_url("")).rstrip("/"), f"loop:{uuid.uuid4()}")
    try:
        await c.connect(handshake=False, wait_synced=False)
        assert await c.wait_closed() == CloseCode.AUTH_TIMEOUT
    finally:
        await c.close()


async def test_credentials_in_a_first_auth_message(
    base_url: str, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    c = YwsClient(base_url, f"loop:{loop['id']}")
    try:
        await c.connect(first_message=protocol.auth_message(json.dumps({"token": owner["token"]})))
        assert c.synced and c.close_code is None
        assert c.meta()["name"] == loop["name"]
    finally:
        await c.close()


async def test_a_viewer_reads_and_its_update_is_refused(
    client: TestClient, base_url: str, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    link = await share(client, "loops", loop["id"], owner["token"])
    editor = await yws(base_url, f"loop:{loop['id']}", token=owner["token"])
    viewer = await yws(base_url, f"loop:{loop['id']}", shareToken=link["shareToken"])
    try:
        editor.meta()["name"] = "Seen by the viewer"
        await eventually(lambda: viewer.meta().get("name") == "Seen by the viewer")
        viewer.meta()["name"] = "Not allowed"
        assert await viewer.wait_closed() == CloseCode.FORBIDDEN
        assert viewer.close_reason == "read_only" and viewer.denied
        resp = await client.get(f"/api/loops/{loop['id']}", headers=bearer(owner["token"]))
        assert (await resp.json())["name"] == "Seen by the viewer"
    finally:
        await editor.close()
        await viewer.close()


async def test_revocation_closes_with_4409(
    client: TestClient, base_url: str, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    mate = await named_user(client)
    await add_collaborator(client, "loops", loop["id"], owner["token"], mate["username"], "editor")
    c = await yws(base_url, f"loop:{loop['id']}", token=mate["token"])
    try:
        resp = await client.delete(
            f"/api/loops/{loop['id']}/collaborators/{mate['username']}", headers=bearer(owner["token"])
        )
        assert resp.status == 200
        assert await c.wait_closed() == CloseCode.REVOKED
        assert c.close_reason == "access_revoked"
    finally:
        await c.close()


async def test_deletion_closes_with_4404(
    client: TestClient, base_url: str, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    c = await yws(base_url, f"loop:{loop['id']}", token=owner["token"])
    try:
        resp = await client.delete(f"/api/loops/{loop['id']}", headers=bearer(owner["token"]))
        assert resp.status == 200
        assert await c.wait_closed() == CloseCode.NOT_FOUND
        assert c.close_reason == "document_deleted"
    finally:
        await c.close()


async def test_a_refused_update_is_rolled_back_and_closes_4422(
    client: TestClient, base_url: str, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    c = await yws(base_url, f"loop:{loop['id']}", token=owner["token"])
    watcher = await yws(base_url, f"loop:{loop['id']}", token=owner["token"])
    try:
        with c.doc.transaction():  # more meta keys than REST allows
            for i in range(1000):
                c.meta()[f"key{i}"] = i
        assert await c.wait_closed() == CloseCode.REFUSED_UPDATE
        assert c.close_reason == "content_too_large"
        resp = await client.get(f"/api/loops/{loop['id']}", headers=bearer(owner["token"]))
        assert (await resp.json())["name"] == loop["name"]
        assert "key1" not in watcher.meta() and watcher.close_code is None
    finally:
        await c.close()
        await watcher.close()


async def test_a_step_past_the_loop_end_closes_4422_not_1000(
    client: TestClient, base_url: str, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    # A 1000 would have the stock client reconnect and resend the refused step forever.
    c = await yws(base_url, f"loop:{loop['id']}", token=owner["token"])
    try:
        outside = {"step": loop["length"] * 16, "soundId": "drum-kick", "velocity": 0.8}
        c.doc.get("steps", type=Map)[step_key(outside)] = Map(outside)
        assert await c.wait_closed() == CloseCode.REFUSED_UPDATE
        assert c.close_reason == "position_out_of_range"
        resp = await client.get(f"/api/loops/{loop['id']}", headers=bearer(owner["token"]))
        assert [s["step"] for s in (await resp.json())["iconSequence"]] == [0, 4]
    finally:
        await c.close()


async def test_awareness_is_echoed_to_its_y_websocket_sender_only(
    base_url: str, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    # The stock y-websocket client drops a socket that heard nothing for 30 s; alone in a room
    # it hears the echo of its 15 s awareness renewal (the same state, the next clock), as
    # y-websocket-server sends it. The Socket.IO wire does not echo (its clients do not need it).
    sio = CollabClient(base_url, "loop", loop["id"], token=owner["token"], awareness_timer=False)
    to_sio: list[bytes] = []

    def on_sio_awareness(update: Any = None, *rest: Any) -> None:
        to_sio.append(update)
        sio._on_awareness_update(update, *rest)

    sio.sio.on(AWARENESS_UPDATE, on_sio_awareness, namespace=sio.namespace)
    await sio.connect()
    a = await yws(base_url, f"loop:{loop['id']}", token=owner["token"])
    try:
        state = json.dumps({"user": {"name": "over-yws"}})
        for clock in (1, 2):  # the first state, then its renewal
            update = bytes([1]) + _var_uint(123457) + _var_uint(clock) + _var_string(state)
            await a.send(protocol.awareness_message(update))
            await eventually(lambda update=update: update in a.awareness)
        sio.set_awareness({"user": {"name": "over-sio"}})
        await eventually(lambda: any(b"over-sio" in u for u in a.awareness))
        # Anything the server sent sio before this last update has reached it once this has.
        last = bytes([1]) + _var_uint(123457) + _var_uint(3) + _var_string(json.dumps({"last": 1}))
        await a.send(protocol.awareness_message(last))
        await eventually(lambda: last in to_sio)
        assert not any(b"over-sio" in u for u in to_sio)
        assert a.close_code is None
    finally:
        await a.close()
        await sio.close()


async def test_sync_step_1_is_answered_with_what_the_client_lacks(
    base_url: str, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    c = await yws(base_url, f"loop:{loop['id']}", token=owner["token"])
    try:
        before = len(c.awareness)
        await c.send(bytes([protocol.MessageType.QUERY_AWARENESS]))
        await c.send(protocol.sync_message(YSyncMessageType.SYNC_STEP1, c.doc.get_state()))
        await c.send(protocol.sync_message(YSyncMessageType.SYNC_UPDATE, b"\x00\x00"))  # nothing new
        await eventually(lambda: c.synced)
        assert c.close_code is None and len(c.awareness) >= before
    finally:
        await c.close()


def _var_uint(n: int) -> bytes:
    from pycrdt import write_var_uint

    return write_var_uint(n)


def _var_string(text: str) -> bytes:
    from pycrdt import write_message

    return write_message(text.encode())


async def test_the_per_user_cap_counts_both_wires(aiohttp_client: Any, settings: Settings) -> None:
    server = await aiohttp_client(create_app(dataclasses.replace(settings, max_connections_per_user=2)))
    base_url = str(server.make_url("")).rstrip("/")
    owner = await sign_up(server)
    resp = await server.post("/api/loops", json=LOOP, headers=bearer(owner["token"]))
    loop_id = (await resp.json())["id"]
    sio = CollabClient(base_url, "loop", loop_id, token=owner["token"])
    await sio.connect()
    first = await yws(base_url, f"loop:{loop_id}", token=owner["token"])
    second = YwsClient(base_url, f"loop:{loop_id}", token=owner["token"])
    try:
        await second.connect(wait_synced=False)
        assert await second.wait_closed() == CloseCode.TRY_AGAIN_LATER  # the stock client retries later
        assert second.close_reason == "room_full" and first.close_code is None
    finally:
        await sio.close()
        await first.close()
        await second.close()


async def test_a_shutdown_closes_1012_so_clients_reconnect_elsewhere(
    client: TestClient, base_url: str, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    c = await yws(base_url, f"loop:{loop['id']}", token=owner["token"])
    try:
        await client.app.shutdown()  # what SIGTERM runs
        assert await c.wait_closed() == CloseCode.RESTART
    finally:
        await c.close()


async def test_a_page_of_another_origin_is_refused(
    base_url: str, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    async with aiohttp.ClientSession() as http:
        for origin, code in (("http://evil.test", CloseCode.FORBIDDEN), ("http://composer.test", None)):
            ws = await http.ws_connect(
                f"{base_url}/ws/loop:{loop['id']}?token={owner['token']}", origin=origin
            )
            message = await ws.receive(timeout=5)
            if code is None:
                assert message.type is aiohttp.WSMsgType.BINARY  # the server's sync step 1
            else:  # y-protocols' permission denied, then the close
                assert message.data[:2] == bytes([protocol.MessageType.AUTH, protocol.AUTH_PERMISSION_DENIED])
                message = await ws.receive(timeout=5)
                assert message.type is aiohttp.WSMsgType.CLOSE and ws.close_code == code
            await ws.close()


async def test_tokens_in_the_url_never_reach_the_access_log_and_connections_are_counted(
    aiohttp_client: Any, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    server = await aiohttp_client(create_app(settings.replace(access_log=True)))
    base_url = str(server.make_url("")).rstrip("/")
    owner = await sign_up(server)
    loop_id = (await (await server.post("/api/loops", json=LOOP, headers=bearer(owner["token"]))).json())[
        "id"
    ]
    caplog.set_level(logging.INFO, logger="musicplayground.access")
    c = await yws(base_url, f"loop:{loop_id}", token=owner["token"])
    try:
        metrics = samples(await (await server.get("/metrics")).text())
        assert metrics[("musicplayground_ywebsocket_connections", ())] == 1
    finally:
        await c.close()
    await eventually(lambda: f"/ws/loop:{loop_id}" in caplog.text)
    assert "token=REDACTED" in caplog.text and owner["token"] not in caplog.text
