"""The one place that reaches into python-socketio / python-engineio internals.

The fan-out sends one event to many sockets. ``AsyncServer.emit`` would create a task and
re-encode per recipient, and a binary event (every Yjs message) is two Engine.IO packets,
so two WebSocket frames, two queue items and two writes per recipient. Instead
:func:`encode_event` builds the event's WebSocket frames once (server frames are unmasked,
so the same bytes suit every recipient) and :func:`queue_frames` writes them to each
recipient's TCP transport in one call when its Engine.IO writer task is idle, or else puts
them, as one item, on its send queue, which the writer drains in order through our WebSocket
driver (:class:`FramedWebSocket`). Either way these frames never overtake or split what
Engine.IO itself sends (pings, acks).

That needs what neither library documents: the manager's ``eio_sid_from_sid``, the server's
``sockets`` map and driver table (``_async``), each socket's ``queue`` (and asyncio's
``Queue._getters``, to see the writer parked on it), and the driver being handed the socket's
bound ``_websocket_handler``. The driver runs the socket's WebSocket session itself
(:func:`_serve`, in place of that handler, whose source is checked by hash): engineio's
makes a task and a ``wait_for`` for every frame it reads. The versions this was checked
against are pinned exactly in ``pyproject.toml`` (:data:`CHECKED_VERSIONS`); :func:`install`
runs :func:`self_check` at start-up and ``tests/realtime/test_engineio_adapter.py`` fails
loudly when an upgrade moves them.

The driver also declines permessage-deflate (aiohttp's public ``compress=False``): our frames
are small Yjs deltas that deflate does not shrink, and compressing them cost 14 % of the
server's CPU under the stock client's load (docs/realtime.md, "WebSocket compression").
"""

from __future__ import annotations

import asyncio
import collections
import functools
import hashlib
import inspect
import logging
from collections.abc import Iterable
from importlib.metadata import version
from typing import Any, Final

import engineio
import socketio
from aiohttp import web
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from engineio.async_drivers import aiohttp as eio_aiohttp
from socketio import packet as sio_packet
from wsproto.frame_protocol import FrameProtocol

log = logging.getLogger(__name__)

# distribution -> the exact version this module was written against (pinned in pyproject.toml).
CHECKED_VERSIONS: Final = {"python-socketio": "5.18.1", "python-engineio": "4.15.1"}

# The source of engineio's AsyncSocket._websocket_handler, which _serve stands in for: a
# change to it must be read before _serve is trusted again.
CHECKED_WEBSOCKET_HANDLER_SHA256: Final = "27f120df4d717a24478b7b0f7389ce19eea8a881dd07e2c81fb1cf2493e006a5"

# A socket whose unsent frames pass this is not reading (or cannot keep up): it is closed,
# and its client reconnects and syncs only what it lacks. Well above the largest message
# (a whole document, 8 MB at most, sent once on join).
MAX_SEND_BACKLOG_BYTES: Final = 32 * 1024 * 1024

_EIO_MESSAGE: Final = str(eio_packet.MESSAGE)
_SIO_PACKET_TYPES: Final = frozenset(str(t) for t in range(len(sio_packet.packet_names)))

# The source of engineio's AsyncSocket.receive: _serve hands MESSAGE packets to the server's
# "message" handler as receive does; a change to receive must be read first.
CHECKED_RECEIVE_SHA256: Final = "a91ae36ec2fb5340713ec03be88b1ece9887d2f3116ff09f24dda3a6d965db28"

# Server-side frame encoder: unmasked frames, no extensions (compression is declined).
_FRAMES = FrameProtocol(client=False, extensions=[])


class EngineIOAdapterError(RuntimeError):
    """The installed python-socketio / python-engineio no longer look like what this adapter uses."""


class WireFrames(bytes):
    """Ready WebSocket frames (one Socket.IO event), written to the transport as they are."""


class FramedPacket(eio_packet.Packet):
    """An Engine.IO queue item carrying :class:`WireFrames`; only :class:`FramedWebSocket`
    knows how to send it (the engine is websocket-only, so no other transport sees it)."""

    def __init__(self, frames: WireFrames) -> None:
        super().__init__(eio_packet.MESSAGE, frames)
        self.encode_cache = frames

    def encode(self, b64: bool = False) -> WireFrames:
        assert not b64, "framed packets never travel over long-polling"
        return self.encode_cache  # type: ignore[no-any-return]


class FramedWebSocket(eio_aiohttp.WebSocket):  # type: ignore[misc]
    """python-engineio's aiohttp WebSocket driver, writing :class:`WireFrames` in one call."""

    async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
        request: web.Request = environ["aiohttp.request"]
        self._sock = web.WebSocketResponse(max_msg_size=self.server.max_http_buffer_size, compress=False)
        await self._sock.prepare(request)
        self._transport = request.transport
        # The Engine.IO socket this driver serves (the handler is its bound method): the
        # fan-out finds the transport through it (queue_frames).
        socket = self.handler.__self__
        socket.framed_transport = self._transport
        self.environ = environ
        await _serve(socket, self)
        return self._sock

    async def send(self, message: str | bytes) -> None:
        if type(message) is WireFrames:
            if not _write_frames(self._transport, message):
                raise ConnectionResetError("the socket is closed")
        elif isinstance(message, bytes):
            await self._sock.send_bytes(message)
        else:
            await self._sock.send_str(message)


async def _serve(socket: Any, ws: FramedWebSocket) -> None:
    """The WebSocket session of an Engine.IO socket, in place of its ``_websocket_handler``.

    That handler does this too (on a websocket-only engine a socket starts on its WebSocket,
    never upgrades to it), but wraps every frame it reads in a new task and ``wait_for``:
    two per Yjs message, a tenth of the server's CPU under load. Here the read loop awaits
    aiohttp directly. A client that goes silent is still closed: Engine.IO's ping timeout
    closes the socket, the writer then times out on its empty queue and closes the
    WebSocket, which ends the read.
    """
    server = socket.server
    socket.connected = True
    socket.upgraded = True
    writer = asyncio.ensure_future(_write_queued(socket, ws))
    sock: web.WebSocketResponse = ws._sock
    sid = socket.sid
    on_message = server.handlers["message"]  # python-socketio's (self_check)
    try:
        while True:
            try:
                message = await sock.receive()
            except Exception:  # a broken connection: what engineio's loop does too
                break
            data = message.data
            if type(data) is not bytes and type(data) is not str:  # close, closing, error
                break
            if len(data) > server.max_http_buffer_size:
                break
            try:
                # An Engine.IO MESSAGE (a binary frame, or "4" and a Socket.IO packet, which
                # starts with its type digit) goes straight to python-socketio, as
                # ``socket.receive`` would pass it, without a packet object and engineio's
                # dispatch per frame (two frames per Yjs message). Anything else: engineio.
                if type(data) is bytes:
                    await on_message(sid, data)
                elif data[:1] == _EIO_MESSAGE and data[1:2] in _SIO_PACKET_TYPES:
                    await on_message(sid, data[1:])
                else:
                    await socket.receive(eio_packet.Packet(encoded_packet=data))
            except eio_exceptions.UnknownPacketError:
                pass
            except eio_exceptions.SocketIsClosedError:
                break
            except Exception:
                log.exception("engine.io: unexpected error handling a packet")
    finally:
        await socket.queue.put(None)  # ends the writer
        await writer
        await socket.close(wait=False, abort=True, reason=server.reason.TRANSPORT_CLOSE)


async def _write_queued(socket: Any, ws: FramedWebSocket) -> None:
    """Engine.IO's writer: drain the socket's send queue until it ends (None) or times out."""
    while True:
        try:
            packets = await socket.poll()
        except eio_exceptions.QueueEmpty:
            break
        if not packets:
            break
        try:
            for pkt in packets:
                await ws.send(pkt.encode())
        except Exception:
            break
    await ws.close()


def self_check(sio: socketio.AsyncServer) -> None:
    """Raise :class:`EngineIOAdapterError` unless the internals used below are where we expect.

    Checks the installed versions against :data:`CHECKED_VERSIONS` and the shape of the
    objects (attributes, methods, the writer's loop), so an upgrade fails at start-up, not
    under load.
    """
    installed = {name: version(name) for name in CHECKED_VERSIONS}
    if installed != CHECKED_VERSIONS:
        raise EngineIOAdapterError(
            f"realtime/engineio_adapter.py was checked against {CHECKED_VERSIONS}, found {installed}: "
            "re-check the internals it uses and update CHECKED_VERSIONS and the pins"
        )
    problems = []
    if not callable(getattr(sio.manager, "eio_sid_from_sid", None)):
        problems.append("socketio manager has no eio_sid_from_sid()")
    if not isinstance(getattr(sio.eio, "sockets", None), dict):
        problems.append("engineio server has no sockets dict")
    if not isinstance(getattr(sio.eio, "_async", None), dict) or "websocket" not in sio.eio._async:
        problems.append("engineio server has no driver table with a websocket entry")
    if sio.eio.transports != ["websocket"]:
        problems.append("framed packets need a websocket-only engine")
    socket_init = inspect.getsource(engineio.base_socket.BaseSocket.__init__)
    if "self.queue = " not in socket_init:
        problems.append("engineio BaseSocket.__init__ no longer creates self.queue")
    if "self.queue.get" not in inspect.getsource(engineio.async_socket.AsyncSocket.poll):
        problems.append("engineio AsyncSocket.poll no longer drains self.queue")
    handler = inspect.getsource(engineio.async_socket.AsyncSocket._websocket_handler).encode()
    if hashlib.sha256(handler).hexdigest() != CHECKED_WEBSOCKET_HANDLER_SHA256:
        problems.append("engineio's AsyncSocket._websocket_handler changed: re-read it against _serve")
    receive = inspect.getsource(engineio.async_socket.AsyncSocket.receive).encode()
    if hashlib.sha256(receive).hexdigest() != CHECKED_RECEIVE_SHA256:
        problems.append("engineio's AsyncSocket.receive changed: re-read it against _serve")
    on_message = getattr(sio.eio, "handlers", {}).get("message")
    if getattr(on_message, "__func__", None) is not socketio.AsyncServer._handle_eio_message:
        problems.append("the engine's message handler is no longer python-socketio's _handle_eio_message")
    for name in ("poll", "receive", "close"):
        if not inspect.iscoroutinefunction(getattr(engineio.async_socket.AsyncSocket, name, None)):
            problems.append(f"engineio AsyncSocket.{name} is no longer a coroutine function")
    upgrade = inspect.getsource(engineio.async_socket.AsyncSocket._upgrade_websocket)
    if "self.server._async['websocket'](\n            self._websocket_handler" not in upgrade:
        problems.append("engineio no longer makes its websocket driver with the socket's bound handler")
    if not isinstance(getattr(asyncio.Queue(), "_getters", None), collections.deque):
        problems.append("asyncio.Queue no longer keeps its waiting getters in _getters")
    if problems:
        raise EngineIOAdapterError("; ".join(problems))


def install(sio: socketio.AsyncServer) -> None:
    """Check the internals, then give this server (only) the framed WebSocket driver."""
    self_check(sio)
    sio.eio._async = {**sio.eio._async, "websocket": FramedWebSocket}


def encode_event(sio: socketio.AsyncServer, namespace: str, event: str, data: Any) -> FramedPacket:
    """One Socket.IO EVENT as the WebSocket frames that carry it: a text frame with the
    Engine.IO MESSAGE packet, then one binary frame per attachment (Engine.IO v4 sends binary
    packets over WebSocket as raw binary frames)."""
    if isinstance(data, bytes):  # every Yjs message: the text frame depends on the event only
        frames = _binary_event_head(sio, namespace, event) + _FRAMES.send_data(data, fin=True)
        return FramedPacket(WireFrames(frames))
    return FramedPacket(WireFrames(_frame_parts(sio, namespace, event, data)))


@functools.lru_cache(maxsize=4096)
def _binary_event_head(sio: socketio.AsyncServer, namespace: str, event: str) -> bytes:
    """The text frame of a one-attachment ``event`` (its placeholder JSON), built once."""
    return _frame_parts(sio, namespace, event, b"", head_only=True)


def _frame_parts(
    sio: socketio.AsyncServer, namespace: str, event: str, data: Any, *, head_only: bool = False
) -> bytes:
    pkt = sio.packet_class(sio_packet.EVENT, namespace=namespace, data=[event, data])
    encoded = pkt.encode()
    parts = encoded if isinstance(encoded, list) else [encoded]
    frames = bytearray()
    for part in parts[:1] if head_only else parts:
        if isinstance(part, bytes):
            frames += _FRAMES.send_data(part, fin=True)
        else:
            frames += _FRAMES.send_data(eio_packet.Packet(eio_packet.MESSAGE, part).encode(), fin=True)
    return bytes(frames)


def engineio_sid(sio: socketio.AsyncServer, sid: str, namespace: str) -> str | None:
    """The Engine.IO session (the transport) under a Socket.IO session of ``namespace``."""
    eio_sid: str | None = sio.manager.eio_sid_from_sid(sid, namespace)
    return eio_sid


def queue_frames(sio: socketio.AsyncServer, eio_sids: Iterable[str], packet: FramedPacket) -> int:
    """Send the same framed event to each open transport; returns how many got it.

    A socket whose writer task is parked on an empty queue has sent everything before this,
    so the frames are written at once (no queue item, no writer wake-up: most of the cost of
    a delivery). Otherwise they join the queue behind what is waiting, in order. Never
    blocks; a socket that stops reading is closed (:data:`MAX_SEND_BACKLOG_BYTES`).
    """
    sockets = sio.eio.sockets
    frames = packet.encode_cache
    delivered = 0
    for eio_sid in eio_sids:
        socket = sockets.get(eio_sid)
        if socket is None or socket.closed:
            continue
        queue = socket.queue
        if (
            queue.empty()
            and queue._getters
            and _write_frames(getattr(socket, "framed_transport", None), frames)
        ):
            delivered += 1
            continue
        queue.put_nowait(packet)
        delivered += 1
    return delivered


def _write_frames(transport: asyncio.Transport | None, frames: bytes) -> bool:
    """Write ready frames to a socket's transport; False if it is closed."""
    if transport is None or transport.is_closing():
        return False
    transport.write(frames)
    if transport.get_write_buffer_size() > MAX_SEND_BACKLOG_BYTES:
        transport.abort()  # the read loop ends and the socket is disconnected
    return True
