"""Unit tests of loadtest.client.CollabClient's protocol handling, without a server.

The Socket.IO handlers are called directly with what python-socketio would pass them; what the
client would send is read from its outgoing queue.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pycrdt import Awareness, Doc, Map

from loadtest.client import (
    AWARENESS_UPDATE,
    EMPTY_UPDATE,
    SYNC_STEP_1,
    SYNC_UPDATE,
    CollabClient,
    _refusal_parts,
    decode_state_vector,
    namespace_for,
)

DOC_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")


@pytest.fixture
async def client() -> AsyncIterator[CollabClient]:
    c = CollabClient("http://127.0.0.1:1/", "loop", DOC_ID, token="tok", awareness_timer=False)
    yield c
    await c.close()


def queued(c: CollabClient) -> list[tuple[str, Any]]:
    """Drain and return the outgoing queue as ``(event, payload)``."""
    out = []
    while not c._outbox.empty():
        item = c._outbox.get_nowait()
        c._outbox.task_done()
        out.append((item.event, item.payload))
    return out


def server_doc_with(name: str) -> Doc:
    doc: Doc[Any] = Doc()
    doc.get("meta", type=Map)["name"] = name
    return doc


def test_namespace() -> None:
    assert namespace_for("loop", DOC_ID) == f"/yjs|loop:{DOC_ID}"
    assert namespace_for("song", "abc") == "/yjs|song:abc"
    with pytest.raises(ValueError):
        namespace_for("playlist", DOC_ID)


async def test_auth_and_url(client: CollabClient) -> None:
    assert client.base_url == "http://127.0.0.1:1"
    assert client.namespace == f"/yjs|loop:{DOC_ID}"
    assert client.auth() == {"token": "tok"}
    client.token = "fresh"  # read again at every (re)connect
    client.share_token = "share"
    assert client.auth() == {"token": "fresh", "shareToken": "share"}


def test_refusal_parts() -> None:
    assert _refusal_parts({"message": "unauthorized", "data": {"code": "x"}}) == (
        "unauthorized",
        {"code": "x"},
    )
    assert _refusal_parts({"message": "nope"}) == ("nope", None)
    assert _refusal_parts("Connection refused by the server") == ("Connection refused by the server", None)


async def test_no_awareness_state_until_set(client: CollabClient) -> None:
    assert client.awareness.get_local_state() is None
    assert client.awareness.states == {}


async def test_edits_before_connect_are_left_to_the_handshake(client: CollabClient) -> None:
    client.doc.get("meta", type=Map)["name"] = "offline"
    client.set_awareness({"cursor": {"bar": 0, "step": 1, "row": 2}})
    assert queued(client) == []
    # The server's sync-step-1 (an empty server) is answered with everything we have.
    server: Doc[Any] = Doc()
    reply = client._on_sync_step_1(server.get_state())
    server.apply_update(reply)
    assert server.get("meta", type=Map)["name"] == "offline"


async def test_server_sync_step_1_reply_is_the_diff(client: CollabClient) -> None:
    server = server_doc_with("shared")
    client.apply_remote_update(server.get_update())
    client.doc.get("meta", type=Map)["bpm"] = 100
    reply = client._on_sync_step_1(server.get_state())
    other: Doc[Any] = Doc()
    other.apply_update(reply)
    assert other.get("meta", type=Map).to_py() == {"bpm": 100.0}  # only what the server lacks
    assert client._on_sync_step_1(client.doc.get_state()) == EMPTY_UPDATE


async def test_bad_server_state_vector_is_recorded(client: CollabClient) -> None:
    assert client._on_sync_step_1("not bytes") == EMPTY_UPDATE
    assert client._on_sync_step_1(b"\xff\xff\xff") == EMPTY_UPDATE
    assert len(client.protocol_errors) == 2


async def test_handshake_sets_synced(client: CollabClient) -> None:
    await client._on_connect()
    [(event, sv), *rest] = _items(client)
    assert event == SYNC_STEP_1 and sv == b"\x00" and rest == []
    assert not client.synced.is_set()
    client._on_sync_step_1(b"\x00")
    assert not client.synced.is_set()
    server = server_doc_with("from server")
    _ack(client)(server.get_update(sv))
    assert client.synced.is_set()
    assert client.doc.get("meta", type=Map)["name"] == "from server"
    assert [e for e, _ in queued(client)] == [SYNC_STEP_1]  # the ack's update is not sent back


async def test_handshake_sends_awareness_when_set(client: CollabClient) -> None:
    client.set_awareness({"user": {"name": "Ann"}})
    await client._on_connect()
    events = [e for e, _ in queued(client)]
    assert events == [SYNC_STEP_1, AWARENESS_UPDATE]


async def test_local_changes_are_sent_remote_ones_not(client: CollabClient) -> None:
    client._on_sync_step_1(b"\x00")  # live from here on
    meta = client.doc.get("meta", type=Map)
    with client.doc.transaction():
        meta["name"] = "a"
        meta["bpm"] = 90
    meta["length"] = 4
    sent = queued(client)
    assert [e for e, _ in sent] == [SYNC_UPDATE, SYNC_UPDATE]  # one per transaction
    replica: Doc[Any] = Doc()
    for _, update in sent:
        replica.apply_update(update)
    assert replica.get("meta", type=Map).to_py() == {"name": "a", "bpm": 90.0, "length": 4.0}

    client._on_sync_update(server_doc_with("remote").get_update())
    assert client.remote_updates == 1
    assert queued(client) == []
    assert meta["name"] in {"a", "remote"}  # concurrent writes: Yjs picks one deterministically


async def test_bad_remote_updates_do_not_kill_the_client(client: CollabClient) -> None:
    client._on_sync_update(b"\xff\xfe\xfd")
    client._on_sync_update("a string")
    client._on_sync_update(None)
    client._on_awareness_update(b"\x05\x01")
    client._on_awareness_update({"not": "bytes"})
    assert len(client.protocol_errors) == 5
    assert client.remote_updates == 0
    client._on_sync_update(server_doc_with("ok").get_update())
    assert client.doc.get("meta", type=Map)["name"] == "ok"


async def test_awareness_both_ways(client: CollabClient) -> None:
    client._on_sync_step_1(b"\x00")
    client.set_awareness({"cursor": {"bar": 1, "step": 2, "row": 3}, "user": {"name": "Zoë"}})
    [(event, payload)] = queued(client)
    assert event == AWARENESS_UPDATE
    peer = Awareness(Doc())
    peer.apply_awareness_update(payload, "test")
    assert peer.states[client.client_id] == {
        "cursor": {"bar": 1, "step": 2, "row": 3},
        "user": {"name": "Zoë"},
    }

    other_doc: Doc[Any] = Doc()
    other = Awareness(other_doc)
    other.set_local_state({"user": {"name": "Bob"}})
    client._on_awareness_update(other.encode_awareness_update([other_doc.client_id]))
    assert client.remote_awareness() == {other_doc.client_id: {"user": {"name": "Bob"}}}
    assert queued(client) == []  # a peer's entry is never re-sent

    client.set_awareness(None)  # goodbye: a null entry
    [(event, payload)] = queued(client)
    peer.apply_awareness_update(payload, "test")
    assert client.client_id not in peer.states


async def test_disconnect_resets_the_connection_state(client: CollabClient) -> None:
    await client._on_connect()
    client._on_sync_step_1(b"\x00")
    _ack(client)(EMPTY_UPDATE)
    assert client.synced.is_set()
    other_doc: Doc[Any] = Doc()
    other = Awareness(other_doc)
    other.set_local_state({"user": {"name": "Bob"}})
    client._on_awareness_update(other.encode_awareness_update([other_doc.client_id]))
    client.doc.get("meta", type=Map)["name"] = "queued"
    client._on_disconnect("transport error")
    assert client.disconnect_reason == "transport error"
    assert not client.synced.is_set()
    assert client.remote_awareness() == {}
    assert queued(client) == []  # the next handshake sends it
    client.doc.get("meta", type=Map)["name"] = "offline"
    assert queued(client) == []


async def test_server_events_are_collected(client: CollabClient) -> None:
    client._on_error({"code": "read_only", "message": "viewers cannot edit"})
    client._on_presence(
        {"members": [{"userId": "u1", "displayName": "Ann", "role": "owner", "connections": 2}]}
    )
    client._on_role_changed({"role": "viewer"})
    client._on_server_shutdown({"message": "restarting"})
    client._on_other_event("surprise", {"x": 1})
    client._on_connect_error({"message": "unauthorized"})
    assert client.errors == [{"code": "read_only", "message": "viewers cannot edit"}]
    assert client.presence == [{"userId": "u1", "displayName": "Ann", "role": "owner", "connections": 2}]
    assert client.role == "viewer"
    assert client.shutdown_message == "restarting"
    assert client.refusal == {"message": "unauthorized"}
    assert [name for name, _ in client.events] == [
        "error",
        "presence",
        "role-changed",
        "server-shutdown",
        "surprise",
        "connect_error",
    ]


async def test_wait_for_wakes_on_events(client: CollabClient) -> None:
    async def later() -> None:
        await asyncio.sleep(0.05)
        client._on_error({"code": "rate_limited", "message": "slow down"})

    task = asyncio.create_task(later())
    assert await client.wait_for(lambda: client.errors, timeout=2) == [
        {"code": "rate_limited", "message": "slow down"}
    ]
    await task
    with pytest.raises(TimeoutError):
        await client.wait_for(lambda: client.role, timeout=0.05)


# ---------------------------------------------------------------------------- helpers


def _items(c: CollabClient) -> list[tuple[str, Any]]:
    """The queued messages, left in the queue (callbacks kept for _ack)."""
    return [(item.event, item.payload) for item in c._outbox._queue]  # type: ignore[attr-defined]


def _ack(c: CollabClient) -> Any:
    """The ack callback of the queued sync-step-1."""
    for item in c._outbox._queue:  # type: ignore[attr-defined]
        if item.event == SYNC_STEP_1:
            return item.callback
    raise AssertionError("no sync-step-1 queued")


def test_decode_state_vector() -> None:
    assert decode_state_vector(b"\x00") == {}
    a: Doc[Any] = Doc(client_id=7)
    a.get("meta", type=Map)["name"] = "x"
    a.get("meta", type=Map)["bpm"] = 90
    b: Doc[Any] = Doc(client_id=300)
    b.apply_update(a.get_update())
    b.get("meta", type=Map)["length"] = 4
    assert decode_state_vector(b.get_state()) == {7: 2, 300: 1}
    # The same entries in another order decode equal (the byte encoding is not canonical).
    assert decode_state_vector(b"\x02\x07\x02\xac\x02\x01") == decode_state_vector(
        b"\x02\xac\x02\x01\x07\x02"
    )
