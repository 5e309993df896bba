"""The fan-out's narrow adapter over python-socketio / python-engineio internals, and the
WebSocket compression policy. These fail loudly when an upgrade moves what we rely on."""

from __future__ import annotations

import asyncio
import tomllib
from importlib.metadata import version
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio
from aiohttp.test_utils import TestClient
from engineio import packet as eio_packet
from pycrdt import Map
from socketio import packet as sio_packet
from wsproto.frame_protocol import FrameProtocol, Opcode

from loadtest.client import CollabClient, namespace_for
from realtime.wires import Wires
from realtime.ysocketio import engineio_adapter
from realtime.ysocketio.send_queue import SendQueue
from realtime.ysocketio.server import CollabSocketServer
from rest.context import REST_CONTEXT
from tests.helpers import eventually
from tests.hostile.wire import RawSocket
from tests.realtime.conftest import ClientFactory

ROOT = Path(__file__).resolve().parents[2]


def test_the_internals_are_pinned_to_the_checked_versions() -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for name, checked in engineio_adapter.CHECKED_VERSIONS.items():
        assert f"{name}=={checked}" in dependencies, f"pin {name}=={checked} exactly in pyproject.toml"
        assert version(name) == checked


def test_self_check_accepts_the_installed_libraries() -> None:
    engineio_adapter.self_check(socketio.AsyncServer(async_mode="aiohttp", transports=["websocket"]))


def test_self_check_refuses_an_engine_that_allows_long_polling() -> None:
    with pytest.raises(engineio_adapter.EngineIOAdapterError, match="websocket-only"):
        engineio_adapter.self_check(socketio.AsyncServer(async_mode="aiohttp"))


def test_self_check_refuses_an_engine_whose_messages_go_elsewhere() -> None:
    """The read loop hands Engine.IO messages straight to python-socketio's handler."""
    sio = socketio.AsyncServer(async_mode="aiohttp", transports=["websocket"])

    async def elsewhere(sid: str, data: Any) -> None:
        pass

    sio.eio.on("message", elsewhere)
    with pytest.raises(engineio_adapter.EngineIOAdapterError, match="_handle_eio_message"):
        engineio_adapter.self_check(sio)


def test_an_event_is_framed_as_engineio_would_send_it() -> None:
    """The frames built once for a fan-out carry exactly the packets python-socketio encodes:
    a text frame with the Engine.IO MESSAGE, then the binary attachment as a raw frame."""
    sio = socketio.AsyncServer(async_mode="aiohttp", transports=["websocket"])
    namespace, update = "/yjs|loop:00000000-0000-0000-0000-000000000001", bytes(range(200))
    framed = engineio_adapter.encode_event(sio, namespace, "sync-update", update)
    reader = FrameProtocol(client=True, extensions=[])
    reader.receive_bytes(framed.encode())
    frames = [(frame.opcode, frame.payload) for frame in reader.received_frames()]
    expected = sio.packet_class(sio_packet.EVENT, namespace=namespace, data=["sync-update", update]).encode()
    assert frames == [(Opcode.TEXT, "4" + expected[0]), (Opcode.BINARY, update)]
    # A JSON event (presence, errors) is one text frame.
    framed = engineio_adapter.encode_event(sio, namespace, "presence", {"members": []})
    reader.receive_bytes(framed.encode())
    expected = sio.packet_class(sio_packet.EVENT, namespace=namespace, data=["presence", {"members": []}])
    assert [(f.opcode, f.payload) for f in reader.received_frames()] == [
        (Opcode.TEXT, "4" + expected.encode())
    ]


async def test_fan_out_is_encoded_once_and_counted(
    client: TestClient, owner: dict[str, Any], loop: dict[str, Any], connect: ClientFactory
) -> None:
    service = client.app[REST_CONTEXT].documents
    writer = await connect(loop["id"], token=owner["token"])
    readers = [await connect(loop["id"], token=owner["token"]) for _ in range(3)]
    before = service.deliveries
    writer.doc.get("meta", type=Map)["name"] = "fan-out"
    for reader in readers:

        def renamed(r: CollabClient = reader) -> bool:
            return r.doc.get("meta", type=Map).get("name") == "fan-out"

        await reader.wait_for(renamed)
    await eventually(lambda: service.deliveries - before == len(readers))


async def test_websocket_compression_is_declined(client: TestClient) -> None:
    url = client.make_url("/socket.io/?EIO=4&transport=websocket")
    async with aiohttp.ClientSession() as http:
        # aiohttp's client offers permessage-deflate when compress is set, like the browsers.
        async with http.ws_connect(url, compress=15) as ws:
            assert ws.compress == 0
            opening = await ws.receive_str()
            assert opening.startswith("0{")


async def test_a_silent_client_is_closed_by_the_ping_timeout(client: TestClient) -> None:
    """The driver's read loop has no timeout of its own (engineio's made a task and a
    wait_for per frame): a client that stops answering pings is closed by Engine.IO's ping
    timeout, and its WebSocket ends."""
    engine = socketio_wire(client).sio.eio
    engine.ping_interval, engine.ping_timeout = 0.2, 0.2
    url = client.make_url("/socket.io/?EIO=4&transport=websocket")
    async with aiohttp.ClientSession() as http, http.ws_connect(url, autoping=True) as ws:
        assert (await ws.receive_str()).startswith("0{")
        received = []
        while True:  # never answers the Engine.IO pings ("2")
            message = await asyncio.wait_for(ws.receive(), 10)
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            received.append(message.data)
        assert "2" in received
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    await eventually(lambda: not engine.sockets)


async def test_an_answered_ping_is_followed_by_the_next(client: TestClient) -> None:
    """Pings run on a timer per socket (no task): each PONG schedules the next PING."""
    engine = socketio_wire(client).sio.eio
    engine.ping_interval, engine.ping_timeout = 0.1, 5
    url = client.make_url("/socket.io/?EIO=4&transport=websocket")
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        assert (await ws.receive_str()).startswith("0{")
        for _ in range(3):
            assert await asyncio.wait_for(ws.receive_str(), 5) == "2"
            await ws.send_str("3")
        assert len(engine.sockets) == 1


async def test_a_session_ends_when_the_client_closes(client: TestClient) -> None:
    engine = socketio_wire(client).sio.eio
    url = client.make_url("/socket.io/?EIO=4&transport=websocket")
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        assert (await ws.receive_str()).startswith("0{")
        await ws.send_str("3")  # a stray PONG is harmless
        await eventually(lambda: len(engine.sockets) == 1)
    await eventually(lambda: not engine.sockets)


def test_self_check_refuses_a_server_without_pending_binary_packets() -> None:
    """The read loop hands a binary frame to python-socketio only when a packet awaits it."""
    sio = socketio.AsyncServer(async_mode="aiohttp", transports=["websocket"])
    del sio._binary_packet
    with pytest.raises(engineio_adapter.EngineIOAdapterError, match="_binary_packet"):
        engineio_adapter.self_check(sio)


def test_every_send_queue_counts_its_bytes_and_overflows_past_the_bound() -> None:
    sio = socketio.AsyncServer(async_mode="aiohttp", transports=["websocket"])
    engineio_adapter.install(sio, connect_timeout=5)
    queue = sio.eio.create_queue()  # what the engine gives every socket
    assert isinstance(queue, SendQueue)
    update = engineio_adapter.encode_event(sio, "/yjs|loop:x", "sync-update", b"u" * (1024 * 1024))
    ack = eio_packet.Packet(eio_packet.MESSAGE, b"a" * (1024 * 1024))  # what python-socketio queues
    while queue.backlog + 2 * 1024 * 1024 <= engineio_adapter.MAX_SEND_BACKLOG_BYTES:
        queue.put_nowait(update)
        queue.put_nowait(ack)
    assert not queue.overflowed
    queue.put_nowait(ack)
    queue.put_nowait(ack)
    assert queue.overflowed


async def test_the_send_queue_hands_over_in_order_times_out_and_joins() -> None:
    """What engineio's sockets and the writer ask of the queue (it is no asyncio.Queue)."""
    queue = SendQueue()
    assert not await queue.wait(0.01)  # nothing came: the writer's idle timeout
    ping, ack = eio_packet.Packet(eio_packet.PING), eio_packet.Packet(eio_packet.MESSAGE, "ack")
    getter = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    assert queue.writer_waiting  # the fan-out may write straight to the transport
    await queue.put(ping)
    queue.put_nowait(ack)
    queue.put_nowait(None)
    assert await getter is ping
    assert not queue.writer_waiting and queue.qsize() == 2 and queue.backlog == len("ack")
    joined = asyncio.ensure_future(queue.join())
    queue.task_done()
    assert queue.get_nowait() is ack
    queue.task_done()
    await asyncio.sleep(0)
    assert not joined.done()  # None is still queued
    assert queue.get_nowait() is None
    queue.task_done()
    await asyncio.wait_for(joined, 1)
    assert queue.empty()
    with pytest.raises(asyncio.QueueEmpty):
        queue.get_nowait()


async def test_a_failing_handler_is_logged_once_with_its_traceback_then_the_socket_closed(
    client: TestClient, owner: dict[str, Any], loop: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    sio = socketio_wire(client).sio

    async def broken(namespace: str, sid: str, *args: Any) -> None:
        raise KeyError("a server bug")

    sio.on("broken", engineio_adapter.guarded(broken), namespace="*")
    namespace = namespace_for("loop", loop["id"])
    async with aiohttp.ClientSession() as http:
        sock = await RawSocket.open(http, str(client.make_url("")).rstrip("/"))
        await sock.connect_namespace(namespace, {"token": owner["token"]})
        for _ in range(engineio_adapter.MAX_MALFORMED_FRAMES):
            await sock.ws.send_str(f'42{namespace},["broken"]')
        code, reason = await sock.closed_by_server()
    assert (code, reason) == (aiohttp.WSCloseCode.POLICY_VIOLATION, "too many failed messages")
    failures = [r for r in caplog.records if "a handler failed" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].exc_info is not None and isinstance(failures[0].exc_info[1], KeyError)


def socketio_wire(client: TestClient) -> CollabSocketServer:
    """The app's Socket.IO wire (one of the document service's wires)."""
    transport = client.app[REST_CONTEXT].documents.transport
    assert isinstance(transport, Wires)
    return next(w for w in transport.wires if isinstance(w, CollabSocketServer))
