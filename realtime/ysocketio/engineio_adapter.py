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
``sockets`` map and driver table (``_async``), each socket's ``queue`` (ours: :class:`SendQueue`,
which sees the writer parked on it), and the driver being handed the socket's
bound ``_websocket_handler``. The driver runs the socket's WebSocket session itself
(:func:`_serve`, in place of that handler, whose source is checked by hash): engineio's
makes a task and a ``wait_for`` for every frame it reads. An idle connection holds no task of
engineio's either: its pings are scheduled on a timer (:func:`_schedule_ping`, in place of
``AsyncSocket.schedule_ping``, checked by hash), and its queue (:class:`SendQueue`) holds
nothing while empty. The versions this was checked
against are pinned exactly in ``pyproject.toml`` (:data:`CHECKED_VERSIONS`); :func:`install`
runs :func:`self_check` at start-up and ``tests/realtime/test_engineio_adapter.py`` fails
loudly when an upgrade moves them.

The driver also declines permessage-deflate (aiohttp's public ``compress=False``): our frames
are small Yjs deltas that deflate does not shrink, and compressing them cost 14 % of the
server's CPU under the stock client's load (docs/realtime.md, "WebSocket compression").

The read loop is also where a connection's memory and log are bounded (docs/hardening.md,
"Socket.IO connections"):

- until the connection has a namespace, nothing but a namespace CONNECT is decoded, and a
  connection without one after ``connect_timeout`` seconds is closed (the application says
  when namespaces join and leave: :func:`namespace_joined`, :func:`namespace_left`);
- a binary frame goes to python-socketio only when a binary packet awaits it (its
  ``_binary_packet``), whose attachment count and size ``realtime/ysocketio/packet.py`` bounds;
- what waits to be sent (the socket's queue, made by :class:`SendQueue`, and the transport's
  write buffer) is bounded by :data:`MAX_SEND_BACKLOG_BYTES`, acks and emits included;
- a malformed frame is logged once per connection as one WARNING line, and the connection is
  closed after :data:`MAX_MALFORMED_FRAMES`; an application handler's failure (wrapped by
  :func:`guarded`) is logged once per connection with its traceback.

Each drop closes the WebSocket with a close code and a reason (a socket that does not read
is aborted: it would not read a close frame either).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, Final

import engineio
import socketio
from aiohttp import WSCloseCode, web
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from engineio.async_drivers import aiohttp as eio_aiohttp
from socketio import packet as sio_packet
from wsproto.frame_protocol import FrameProtocol

from realtime.wires import MAX_SEND_BACKLOG_BYTES
from realtime.ysocketio.packet import PacketRefused
from realtime.ysocketio.send_queue import QUEUE_CALLS, SendQueue, packet_size

log = logging.getLogger(__name__)

# distribution -> the exact version this module was written against (pinned in pyproject.toml).
CHECKED_VERSIONS: Final = {"python-socketio": "5.18.1", "python-engineio": "4.15.1"}

# The source of engineio's AsyncSocket._websocket_handler, which _serve stands in for: a
# change to it must be read before _serve is trusted again.
CHECKED_WEBSOCKET_HANDLER_SHA256: Final = "27f120df4d717a24478b7b0f7389ce19eea8a881dd07e2c81fb1cf2493e006a5"

# Malformed frames a connection may send before it is closed (the first is logged).
MAX_MALFORMED_FRAMES: Final = 5
# How long a dropped connection's close handshake may take before the transport is aborted.
CLOSE_TIMEOUT: Final = 1.0

_EIO_MESSAGE: Final = str(eio_packet.MESSAGE)
_SIO_CONNECT: Final = str(sio_packet.CONNECT)
_MAX_LOGGED_REASON: Final = 120  # characters of an exception's text in the log line
_MAX_CLOSE_REASON: Final = 123  # bytes: the WebSocket limit for a close reason

# The source of engineio's AsyncSocket.receive: _serve hands MESSAGE packets to the server's
# "message" handler as receive does; a change to receive must be read first.
CHECKED_RECEIVE_SHA256: Final = "a91ae36ec2fb5340713ec03be88b1ece9887d2f3116ff09f24dda3a6d965db28"

# The sources of engineio's AsyncSocket.schedule_ping and _send_ping, which _schedule_ping
# and _send_ping stand in for (a timer instead of a sleeping task per socket).
CHECKED_SCHEDULE_PING_SHA256: Final = "fe316639159cd70d34cdb911a055fc1a0056ff15615b8460a1ab6593c95e9372"
CHECKED_SEND_PING_SHA256: Final = "67db82a704ea49d0ad34e967728cec06020d036431d67c1612162a907526cb43"

# Server-side frame encoder: unmasked frames, no extensions (compression is declined).
_FRAMES = FrameProtocol(client=False, extensions=[])


class EngineIOAdapterError(RuntimeError):
    """The installed python-socketio / python-engineio no longer look like what this adapter uses."""


class HandlerFailed(Exception):
    """An application handler raised (see :func:`guarded`); ``__cause__`` is its exception."""


def guarded(handler: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """``handler`` (an event, connect or ack handler) with its failures told apart from what a
    malformed frame makes python-socketio raise: the read loop logs them with their traceback.
    A refused connection (``ConnectionRefusedError``, either kind) passes through for
    python-socketio."""

    @functools.wraps(handler)
    async def run(*args: Any) -> Any:
        try:
            return await handler(*args)
        except (socketio.exceptions.ConnectionRefusedError, ConnectionRefusedError):
            raise  # python-socketio answers these with connect_error
        except Exception as exc:
            raise HandlerFailed from exc

    return run


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


@dataclass(eq=False, slots=True)
class _Wire:
    """What the read loop knows of its connection besides the engine's socket."""

    sid: str
    namespaces: int = 0  # namespaces the application accepted, not yet left
    bare_since: float = 0.0  # loop time the connection last had no namespace
    malformed: int = 0
    handler_failures: int = 0


@dataclass(frozen=True)
class WirePolicy:
    """The read loop's settings (:func:`install`)."""

    connect_timeout: float  # seconds a connection may go without a namespace


class FramedWebSocket(eio_aiohttp.WebSocket):  # type: ignore[misc]
    """python-engineio's aiohttp WebSocket driver, writing :class:`WireFrames` in one call."""

    def __init__(self, handler: Any, server: Any, *, policy: WirePolicy) -> None:
        super().__init__(handler, server)
        self.policy = policy

    async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
        request: web.Request = environ["aiohttp.request"]
        self._sock = web.WebSocketResponse(max_msg_size=self.server.max_http_buffer_size, compress=False)
        await self._sock.prepare(request)
        self._transport = request.transport
        # The Engine.IO socket this driver serves (the handler is its bound method): the
        # fan-out finds the transport through its queue (queue_frames).
        socket = self.handler.__self__
        self._queue: SendQueue = socket.queue
        self._queue.transport, self._queue.sid = self._transport, socket.sid
        self.environ = environ
        await _serve(socket, self, self.policy)
        return self._sock

    async def send(self, message: str | bytes) -> None:
        if type(message) is WireFrames:
            if not _write_frames(self._queue, message):
                raise ConnectionResetError("the socket is closed")
        elif isinstance(message, bytes):
            await self._sock.send_bytes(message)
        else:
            await self._sock.send_str(message)


async def _serve(socket: Any, ws: FramedWebSocket, policy: WirePolicy) -> None:
    """The WebSocket session of an Engine.IO socket, in place of its ``_websocket_handler``.

    That handler does this too (on a websocket-only engine a socket starts on its WebSocket,
    never upgrades to it), but wraps every frame it reads in a new task and ``wait_for``:
    two per Yjs message, a tenth of the server's CPU under load. Here the read loop awaits
    aiohttp directly. A client that goes silent is still closed: Engine.IO's ping timeout
    closes the socket, the writer then times out on its empty queue and closes the
    WebSocket, which ends the read. The bounds of the module docstring are kept here.
    """
    server = socket.server
    socket.connected = True
    socket.upgraded = True
    loop = asyncio.get_running_loop()
    wire = socket.wire = _Wire(socket.sid, bare_since=loop.time())
    queue: SendQueue = socket.queue
    writer = asyncio.ensure_future(_write_queued(socket, ws))
    sock: web.WebSocketResponse = ws._sock
    sid = socket.sid
    on_message = server.handlers["message"]  # python-socketio's (self_check)
    awaiting_attachments = on_message.__self__._binary_packet  # eio sid -> packet (self_check)
    drop: tuple[int, str] | None = None  # (WebSocket close code, reason)
    try:
        while True:
            try:
                if wire.namespaces:
                    message = await sock.receive()
                else:  # aiohttp takes no timeout as "none": never pass 0
                    left = wire.bare_since + policy.connect_timeout - loop.time()
                    message = await sock.receive(timeout=max(left, 0.001))
            except TimeoutError:
                drop = (WSCloseCode.POLICY_VIOLATION, f"no namespace within {policy.connect_timeout:g} s")
                log.info("socket %s: closed, %s", sid, drop[1])
                break
            except Exception:  # a broken connection: what engineio's loop does too
                break
            if queue.overflowed:
                break  # frames read before the drop are not answered
            data = message.data
            try:
                if type(data) is bytes:
                    # An attachment of the binary packet python-socketio holds for this
                    # connection; with none held, a stray frame nothing would decode.
                    if sid in awaiting_attachments:
                        await on_message(sid, data)
                elif type(data) is str:
                    if len(data) > server.max_http_buffer_size:
                        break
                    # An Engine.IO MESSAGE ("4" and a Socket.IO packet) goes straight to
                    # python-socketio, as ``socket.receive`` would pass it, without a packet
                    # object and engineio's dispatch per frame. Anything else: engineio.
                    if data[:1] == _EIO_MESSAGE:
                        if not wire.namespaces and data[1:2] != _SIO_CONNECT:
                            raise _NotConnected("only a namespace CONNECT before a namespace is connected")
                        await on_message(sid, data[1:])
                    else:
                        await socket.receive(eio_packet.Packet(encoded_packet=data))
                else:  # close, closing, error
                    break
            except eio_exceptions.UnknownPacketError:
                pass  # a packet type the server ignores (a client's PING or NOOP)
            except eio_exceptions.SocketIsClosedError:
                break
            except PacketRefused as exc:
                drop = (WSCloseCode.MESSAGE_TOO_BIG, exc.reason)
                log.warning("socket %s: closed, %s", sid, exc.reason)
                break
            except HandlerFailed as exc:
                wire.handler_failures += 1
                if wire.handler_failures == 1:  # a server bug: its traceback, once per connection
                    log.error("socket %s: a handler failed", sid, exc_info=exc.__cause__)
                if wire.handler_failures + wire.malformed >= MAX_MALFORMED_FRAMES:
                    drop = (WSCloseCode.POLICY_VIOLATION, "too many failed messages")
                    break
            except Exception as exc:  # what python-socketio/engineio raise for a malformed frame
                wire.malformed += 1
                if wire.malformed == 1:
                    log.warning(
                        "socket %s: malformed frame (%s: %s); closed after %d",
                        sid,
                        type(exc).__name__,
                        str(exc)[:_MAX_LOGGED_REASON],
                        MAX_MALFORMED_FRAMES,
                    )
                if wire.malformed + wire.handler_failures >= MAX_MALFORMED_FRAMES:
                    drop = (WSCloseCode.POLICY_VIOLATION, "too many malformed Socket.IO frames")
                    break
    finally:
        if drop is not None:
            await _close(sock, ws._transport, *drop)
        await socket.queue.put(None)  # ends the writer
        await writer
        await socket.close(wait=False, abort=True, reason=server.reason.TRANSPORT_CLOSE)


class _NotConnected(ValueError):
    """A frame other than a namespace CONNECT on a connection without a namespace."""


async def _close(sock: web.WebSocketResponse, transport: Any, code: int, reason: str) -> None:
    """Close the WebSocket with ``code`` and ``reason``; abort it if the client does not answer."""
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await sock.close(code=code, message=reason.encode()[:_MAX_CLOSE_REASON])
    except TimeoutError:
        pass
    if not transport.is_closing():
        transport.abort()


async def _write_queued(socket: Any, ws: FramedWebSocket) -> None:
    """Engine.IO's writer: drain the socket's send queue until it ends (None) or stays empty
    for ``ping_interval + ping_timeout`` (what engineio's ``poll`` does, without its
    ``wait_for``, which makes a task per wait)."""
    queue: SendQueue = socket.queue
    server = socket.server
    idle_timeout = server.ping_interval + server.ping_timeout
    while True:
        try:
            if not await queue.wait(idle_timeout):
                break
        except asyncio.CancelledError:
            break  # as engineio's poll: the WebSocket is closed below
        packets = []
        ended = False
        while not queue.empty():
            pkt = queue.get_nowait()
            queue.task_done()
            if pkt is None:
                ended = True
                break
            packets.append(pkt)
        try:
            for pkt in packets:
                queue.backlog -= packet_size(pkt)  # from here on it is in the transport's buffer
                await ws.send(pkt.encode())
        except Exception:
            break
        if ended:
            break
    await ws.close()


def namespace_joined(sio: socketio.AsyncServer, eio_sid: str | None) -> None:
    """The application accepted a namespace on this Engine.IO session."""
    wire = _wire(sio, eio_sid)
    if wire is not None:
        wire.namespaces += 1


def namespace_left(sio: socketio.AsyncServer, eio_sid: str | None) -> None:
    """A namespace the application accepted on this session is gone: with none left, the
    session has ``connect_timeout`` seconds to connect another."""
    wire = _wire(sio, eio_sid)
    if wire is not None and wire.namespaces > 0:
        wire.namespaces -= 1
        if not wire.namespaces:
            wire.bare_since = asyncio.get_running_loop().time()


def _wire(sio: socketio.AsyncServer, eio_sid: str | None) -> _Wire | None:
    socket = sio.eio.sockets.get(eio_sid) if eio_sid is not None else None
    return getattr(socket, "wire", None)


def self_check(sio: socketio.AsyncServer) -> None:
    """Raise :class:`EngineIOAdapterError` unless the internals used below are where we expect.

    Checks the installed versions against :data:`CHECKED_VERSIONS` and the shape of the
    objects (attributes, methods, the writer's loop), so an upgrade fails at start-up, not
    under load.
    """
    installed = {name: version(name) for name in CHECKED_VERSIONS}
    if installed != CHECKED_VERSIONS:
        raise EngineIOAdapterError(
            f"realtime/ysocketio/engineio_adapter.py was checked against {CHECKED_VERSIONS}, "
            f"found {installed}: "
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
    if "self.queue = self.server.create_queue()" not in socket_init:
        problems.append("engineio BaseSocket.__init__ no longer makes self.queue with server.create_queue()")
    if not isinstance(getattr(sio, "_binary_packet", None), dict):
        problems.append("socketio server has no _binary_packet dict")
    eio_message = inspect.getsource(socketio.AsyncServer._handle_eio_message)
    if not all(f in eio_message for f in ("if eio_sid in self._binary_packet:", "pkt.add_attachment(data)")):
        problems.append("python-socketio no longer hands frames to the binary packet kept in _binary_packet")
    queue_calls = set(re.findall(r"self\.queue\.(\w+)", inspect.getsource(engineio.async_socket)))
    if not queue_calls <= QUEUE_CALLS:
        lacking = sorted(queue_calls - QUEUE_CALLS)
        problems.append(f"engineio's sockets call queue methods SendQueue lacks: {lacking}")
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
    for name, checked in (
        ("schedule_ping", CHECKED_SCHEDULE_PING_SHA256),
        ("_send_ping", CHECKED_SEND_PING_SHA256),
    ):
        method = getattr(engineio.async_socket.AsyncSocket, name)
        if method is _schedule_ping:
            continue  # already replaced by install()
        if hashlib.sha256(inspect.getsource(method).encode()).hexdigest() != checked:
            problems.append(f"engineio's AsyncSocket.{name} changed: re-read it against _{name.lstrip('_')}")
    upgrade = inspect.getsource(engineio.async_socket.AsyncSocket._upgrade_websocket)
    if "self.server._async['websocket'](\n            self._websocket_handler" not in upgrade:
        problems.append("engineio no longer makes its websocket driver with the socket's bound handler")
    if problems:
        raise EngineIOAdapterError("; ".join(problems))


def install(sio: socketio.AsyncServer, *, connect_timeout: float) -> None:
    """Check the internals, then give this server (only) the framed WebSocket driver, whose
    connections must connect a namespace within ``connect_timeout`` seconds, and counted
    send queues."""
    self_check(sio)
    driver = functools.partial(FramedWebSocket, policy=WirePolicy(connect_timeout=connect_timeout))
    sio.eio._async = {**sio.eio._async, "websocket": driver}
    sio.eio.create_queue = SendQueue
    # Engine.IO's own pings: a timer per socket instead of a task that sleeps ping_interval
    # (engineio's AsyncSocket is the only class it has, so this holds for every engine in
    # the process; the server never runs another, and the pings sent are the same).
    engineio.async_socket.AsyncSocket.schedule_ping = _schedule_ping


def _schedule_ping(socket: Any) -> None:
    """engineio's ``AsyncSocket.schedule_ping``: the next PING ``ping_interval`` seconds
    after the previous one was answered (or after the connect)."""
    if socket.last_ping:  # only once the previous ping's wait is over
        socket.last_ping = None
        asyncio.get_running_loop().call_later(socket.server.ping_interval, _send_ping, socket)


def _send_ping(socket: Any) -> None:
    """engineio's ``AsyncSocket._send_ping`` after its sleep: its ``send`` finds no ping
    timeout (``last_ping`` was just set) and puts the PING on the queue, as here."""
    if not socket.closing and not socket.closed:
        socket.last_ping = time.time()
        socket.queue.put_nowait(eio_packet.Packet(eio_packet.PING))


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
        queue: SendQueue = socket.queue
        if queue.empty() and queue.writer_waiting and _write_frames(queue, frames):
            delivered += 1
            continue
        queue.put_nowait(packet)  # counted, and bounded (SendQueue)
        delivered += 1
    return delivered


def _write_frames(queue: SendQueue, frames: bytes) -> bool:
    """Write ready frames to the transport of a socket's queue; False if it is closed."""
    transport = queue.transport
    if transport is None or transport.is_closing():
        return False
    transport.write(frames)
    if transport.get_write_buffer_size() > MAX_SEND_BACKLOG_BYTES - queue.backlog:
        queue.check_backlog()
    return True
