"""``/api/asyncapi.json`` against what the server really emits.

Real Socket.IO clients (python-socketio, recording every event with its payload) join a loop as
owner and as share-link viewer; the owner edits, moves its cursor and comments, the viewer tries
to edit, sends an unknown event, has its link revoked, and the server shuts down. Every event the
recorders received must be a message the document says the server sends, with a payload its
schema accepts, and every message it lists must have been seen.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import socketio
from aiohttp.test_utils import TestClient
from jsonschema import Draft202012Validator
from pycrdt import Doc, Map
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from loadtest.client import CollabClient
from tests.helpers import bearer, eventually, sign_up
from tests.sharing_helpers import share
from tests.ywebsocket_client import YwsClient

EMPTY_UPDATE = b"\x00\x00"


class Recorder:
    """A bare python-socketio client that answers the handshake and records every event."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.seen: list[tuple[str, Any]] = []

    async def connect(self, base_url: str, namespace: str, auth: dict[str, str]) -> None:
        def sync_step_1(vector: Any) -> bytes:
            self.seen.append(("sync-step-1", vector))
            return EMPTY_UPDATE  # the server's state vector, answered with nothing new

        async def any_event(event: str, *args: Any) -> None:
            self.seen.append((event, args[0] if len(args) == 1 else list(args)))

        self.sio.on("sync-step-1", sync_step_1, namespace=namespace)
        self.sio.on("*", any_event, namespace=namespace)
        await self.sio.connect(base_url, namespaces=[namespace], transports=["websocket"], auth=auth)

    def names(self) -> set[str]:
        return {name for name, _ in self.seen}


@pytest.fixture
async def recorders() -> AsyncIterator[list[Recorder]]:
    made: list[Recorder] = []
    yield made
    for recorder in made:
        await recorder.sio.disconnect()


def _validator(document: dict[str, Any], pointer: str) -> Draft202012Validator:
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource("urn:asyncapi", resource)
    return Draft202012Validator({"$ref": f"urn:asyncapi#{pointer}"}, registry=registry)


def _sent_by_server(document: dict[str, Any], kind: str) -> dict[str, str]:
    """Socket.IO event name -> message pointer, for the messages the server sends on ``kind``."""
    out = {}
    for operation in document["operations"].values():
        if operation["action"] == "send" and operation["channel"]["$ref"] == f"#/channels/{kind}":
            for ref in operation["messages"]:
                message_name = ref["$ref"].rsplit("/", 1)[1]
                message = document["components"]["messages"][message_name]
                out[message["name"]] = f"/components/messages/{message_name}"
    return out


async def test_every_event_the_server_emits_is_described(
    client: TestClient, base_url: str, owner: dict[str, Any], loop: dict[str, Any], recorders: list[Recorder]
) -> None:
    resp = await client.get("/api/asyncapi.json")
    assert resp.status == 200
    document = await resp.json()
    assert document["asyncapi"] == "3.0.0"
    assert document["channels"]["loop"]["address"] == "/yjs|loop:{id}"
    for schema in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)

    namespace = f"/yjs|loop:{loop['id']}"
    link = await share(client, "loops", loop["id"], owner["token"])
    as_owner, as_viewer = Recorder(), Recorder()
    recorders.extend([as_owner, as_viewer])
    await as_owner.connect(base_url, namespace, {"token": owner["token"]})
    await as_viewer.connect(base_url, namespace, {"shareToken": link["shareToken"]})

    editor = CollabClient(base_url, "loop", loop["id"], token=owner["token"])
    await editor.connect()
    try:
        with editor.doc.transaction():
            editor.doc.get("meta", type=Map)["bpm"] = 111
        editor.set_awareness({"user": {"name": "Ann"}, "cursor": {"bar": 1, "step": 2, "row": 0}})
        await eventually(lambda: {"sync-update", "awareness-update"} <= as_viewer.names())

        scratch: Doc[Any] = Doc()
        scratch.get("meta", type=Map)["name"] = "Vandalized"
        await as_viewer.sio.emit("sync-update", scratch.get_update(), namespace=namespace)
        await as_viewer.sio.emit("no-such-event", {"x": 1}, namespace=namespace)
        posted = await client.post(
            f"/api/loops/{loop['id']}/comments", json={"body": "nice"}, headers=bearer(owner["token"])
        )
        assert posted.status == 201
        await eventually(lambda: "comment" in as_viewer.names())
        await eventually(lambda: len([e for e in as_viewer.seen if e[0] == "error"]) >= 2)

        revoked = await client.delete(f"/api/shares/{link['shareToken']}", headers=bearer(owner["token"]))
        assert revoked.status == 200
        await eventually(lambda: not as_viewer.sio.namespaces)
    finally:
        await editor.close()
    await client.app.shutdown()  # what SIGTERM runs: server-shutdown, then the transports drop
    await eventually(lambda: "server-shutdown" in as_owner.names())
    await asyncio.sleep(0)

    described = _sent_by_server(document, "loop")
    seen = as_owner.seen + as_viewer.seen
    for name, payload in seen:
        assert name in described, f"the server emitted {name!r}, which /api/asyncapi.json does not describe"
        pointer = described[name] + "/payload"
        if isinstance(payload, bytes):
            schema = document["components"]["messages"][described[name].rsplit("/", 1)[1]]["payload"]
            assert schema == {"type": "string", "format": "binary"}, name
        else:
            errors = [e.message for e in _validator(document, pointer).iter_errors(payload)]
            assert errors == [], f"{name} {payload!r}: {errors}"
    assert {name for name, _ in seen} == set(described)  # every described event was really emitted
    codes = {payload["code"] for name, payload in seen if name == "error"}
    assert {"read_only", "unknown_event", "access_revoked"} <= codes


async def test_the_document_describes_what_clients_may_send(client: TestClient) -> None:
    document = await (await client.get("/api/asyncapi.json")).json()
    received = {
        document["components"]["messages"][ref["$ref"].rsplit("/", 1)[1]]["name"]
        for operation in document["operations"].values()
        if operation["action"] == "receive"
        and operation["channel"]["$ref"] in ("#/channels/loop", "#/channels/song")
        for ref in operation["messages"]
    }
    assert received == {"sync-step-1", "sync-update", "awareness-update"}
    handshake = document["channels"]["song"]["x-socketio-handshake"]
    assert set(document["components"]["schemas"]["HandshakeAuth"]["properties"]) == {"token", "shareToken"}
    assert "token expired" in handshake["refusals"]
    # Every operation points at a message of its own channel.
    for operation in document["operations"].values():
        channel = operation["channel"]["$ref"].rsplit("/", 1)[1]
        for ref in operation["messages"]:
            assert ref["$ref"].startswith(f"#/channels/{channel}/messages/")
            assert ref["$ref"].rsplit("/", 1)[1] in document["channels"][channel]["messages"]


def test_every_error_code_of_the_live_path_is_in_the_document() -> None:
    """Every ``error`` event code of the live path (realtime.errors.ErrorCode) is described."""
    from realtime.errors import ErrorCode
    from rest.asyncapi import ERROR_CODES

    connect_only = {ErrorCode.ROOM_FULL}  # a refusal of the handshake, never an error event
    assert set(ERROR_CODES) == {code.value for code in ErrorCode} - connect_only


async def test_every_y_websocket_message_and_close_code_the_server_sends_is_described(
    client: TestClient, base_url: str, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    document = await (await client.get("/api/asyncapi.json")).json()
    channel = document["channels"]["ywebsocketLoop"]
    assert channel["address"] == "/ws/loop:{id}"
    described = {
        tuple(document["components"]["messages"][ref["$ref"].rsplit("/", 1)[1]]["x-ywebsocket-message"])
        for operation in document["operations"].values()
        if operation["action"] == "send" and operation["channel"]["$ref"] == "#/channels/ywebsocketLoop"
        for ref in operation["messages"]
    }
    link = await share(client, "loops", loop["id"], owner["token"])
    seen: set[tuple[int, ...]] = set()
    editor = YwsClient(base_url, f"loop:{loop['id']}", token=owner["token"])
    viewer = YwsClient(base_url, f"loop:{loop['id']}", shareToken=link["shareToken"])
    for c in (editor, viewer):
        c.frames = seen
        await c.connect()
    try:
        with editor.doc.transaction():
            editor.meta()["bpm"] = 99
        await editor.send(bytes([1]) + _awareness(4321, {"user": {"name": "Ann"}}))
        await eventually(lambda: viewer.meta().get("bpm") == 99 and viewer.awareness)
        viewer.meta()["name"] = "not allowed"
        code = await viewer.wait_closed()
    finally:
        await editor.close()
        await viewer.close()
    assert seen <= described and {(0, 0), (0, 1), (0, 2), (1,), (2,)} <= seen, seen
    assert str(code) in channel["x-websocket-close-codes"]


def _awareness(client_id: int, state: dict[str, Any]) -> bytes:
    import json

    from pycrdt import write_message, write_var_uint

    update = (
        write_var_uint(1)
        + write_var_uint(client_id)
        + write_var_uint(1)
        + write_message(json.dumps(state).encode())
    )
    return write_message(update)


async def test_the_live_inbox_emits_what_the_document_describes(
    client: TestClient, base_url: str, owner: dict[str, Any], loop: dict[str, Any], recorders: list[Recorder]
) -> None:
    document = await (await client.get("/api/asyncapi.json")).json()
    assert document["channels"]["notifications"]["address"] == "/notifications"
    described = _sent_by_server(document, "notifications")
    assert set(described) == {"notification"}
    inbox = Recorder()
    recorders.append(inbox)
    await inbox.connect(base_url, "/notifications", {"token": owner["token"]})
    public = await client.patch(
        f"/api/loops/{loop['id']}", json={"isPublic": True}, headers=bearer(owner["token"])
    )
    assert public.status == 200
    fan = await sign_up(client)
    for body in ("nice", "again"):
        posted = await client.post(
            f"/api/loops/{loop['id']}/comments", json={"body": body}, headers=bearer(fan["token"])
        )
        assert posted.status == 201
    await eventually(lambda: len(inbox.seen) == 2, timeout=10)
    for name, payload in inbox.seen:
        assert name in described, f"the inbox emitted {name!r}, which /api/asyncapi.json does not describe"
        errors = [e.message for e in _validator(document, described[name] + "/payload").iter_errors(payload)]
        assert errors == [], f"{name} {payload!r}: {errors}"
    assert [p["count"] for _, p in inbox.seen] == [1, 2]  # one entry, counting up
    listed = await (await client.get("/api/notifications", headers=bearer(owner["token"]))).json()
    pushed = inbox.seen[1][1]
    assert {k: (v, pushed[k]) for k, v in listed["notifications"][0].items() if v != pushed[k]} == {}
    assert listed["notifications"] == [pushed]  # the push is the entry as listed

    refused = socketio.AsyncClient(reconnection=False)
    why: list[Any] = []
    refused.on("connect_error", why.append, namespace="/notifications")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await refused.connect(base_url, namespaces=["/notifications"], transports=["websocket"], auth={})
    refusals = document["channels"]["notifications"]["x-socketio-handshake"]["refusals"]
    [message] = [w["message"] if isinstance(w, dict) else w for w in why]
    assert any(message.startswith(prefix) for prefix in refusals), message
