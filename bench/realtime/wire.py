"""The lean wire client: raw WebSockets speaking Engine.IO v4 / Socket.IO v5 by hand."""

from __future__ import annotations

import array
import asyncio
import base64
import contextlib
import json
import re
import struct
import time
from collections.abc import Callable
from typing import Any, Protocol

import aiohttp
from pycrdt import Doc, Map, TransactionEvent
from socketio import packet as sio_packet

WS_PATH = "/socket.io/?EIO=4&transport=websocket"
PLACEHOLDER = '{"_placeholder":true,"num":0}'
TOKEN_FINDALL = re.compile(rb"T\d+:\d+:\d+;").findall
TEXT = aiohttp.WSMsgType.TEXT
BINARY = aiohttp.WSMsgType.BINARY
perf_counter = time.perf_counter


# --- the wire: one Socket.IO namespace on one raw WebSocket ---------------------------------


class Refused(Exception):
    pass


class UpdateSink(Protocol):
    """What a connection tells its load client (``workers.LoadClient``): every update it receives."""

    def on_update(self, conn: Conn, data: bytes) -> None: ...


class Conn:
    """One y-socket.io client connection to one loop, Engine.IO/Socket.IO framed by hand.

    Handshake (what the y-socket.io provider does): on the server's ``sync-step-1`` (its
    state vector, with an ack id) we ack ``doc.get_update(sv)``; after the Socket.IO CONNECT
    we send our own ``sync-step-1`` (our state vector) and apply the update in its ack.
    Synced = both done. Every later ``sync-update`` goes to ``client.on_update``.
    """

    def __init__(self, client: UpdateSink | None, room: int, index: int, loop_id: str, token: str) -> None:
        self.client = client
        self.room = room
        self.index = index
        self.ns = f"/yjs|loop:{loop_id}"
        self.token = token
        self.update_header = f'451-{self.ns},["sync-update",{PLACEHOLDER}]'
        self.doc: Doc = Doc()
        self.map = self.doc.get("bench", type=Map)
        self.key = f"e{index}"
        self.bit = 1 << index
        self.peers = 0  # other editors of the room that must see our edits
        self.seq = 0
        self.last_token: str | None = None
        self._local = False
        self._out: bytes | None = None
        self._sub = self.doc.observe(self._on_txn)
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._transport: Any = None
        self.reader: asyncio.Task[None] | None = None
        self._next_ack = 1
        self._acks: dict[int, Callable[..., None]] = {}
        self._pending: sio_packet.Packet | None = None
        self._expect_update = False
        self._server_step1 = False
        self._own_step1 = False
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.t_start = self.t_ws = self.t_open = self.t_connected = self.t_synced = 0.0
        self.errors: list[Any] = []
        self.pings = 0
        self.closed = False
        self.close_reason: str | None = None

    def _on_txn(self, event: TransactionEvent) -> None:
        if self._local:
            self._out = event.update

    # --- sending: frames are built here and written with ONE transport.write per message
    # (a text header and its binary attachment in one syscall, never interleaved with
    # another frame of this connection). Client frames must be masked; the mask key is
    # all zeros, which RFC 6455 allows (the server XORs with it), so no payload copy. ---

    def send_text(self, text: str) -> None:
        self._transport.write(ws_frame(1, text.encode()))

    def send_binary(self, header: str, payload: bytes) -> None:
        self._transport.write(ws_frame(1, header.encode()) + ws_frame(2, payload))

    def local_edit(self, key: str, value: str) -> bytes:
        """Set ``bench[key] = value`` in our doc; return the update to send."""
        self._local = True
        try:
            with self.doc.transaction():
                self.map[key] = value
        finally:
            self._local = False
        out, self._out = self._out, None
        assert out is not None
        return out

    # --- lifecycle ---

    async def open(self, session: aiohttp.ClientSession, url: str, timeout: float = 30.0) -> None:
        self.t_start = perf_counter()
        self.ws = await asyncio.wait_for(session.ws_connect(url, autoping=True, max_msg_size=0), timeout)
        self.t_ws = perf_counter()
        self._transport = self.ws._writer.transport  # our own frames: see send_binary
        self.reader = asyncio.create_task(self._read())
        await asyncio.wait_for(asyncio.shield(self.ready), timeout)

    async def close(self) -> None:
        if self.ws is not None and not self.ws.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 5)
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(BaseException):
                await self.reader

    def _fail(self, exc: BaseException) -> None:
        if not self.ready.done():
            self.ready.set_exception(exc)

    async def _read(self) -> None:
        assert self.ws is not None
        receive = self.ws.receive
        header = self.update_header
        try:
            while True:
                msg = await receive()
                kind = msg.type
                if kind is BINARY:
                    if self._expect_update:
                        self._expect_update = False
                        if self.client is not None:
                            self.client.on_update(self, msg.data)
                        else:
                            self.doc.apply_update(msg.data)
                    else:
                        self._on_attachment(msg.data)
                elif kind is TEXT:
                    data = msg.data
                    if data == header:  # the hot path: a relayed update follows
                        self._expect_update = True
                    else:
                        self._on_text(data)
                else:
                    self.close_reason = f"websocket {kind.name}"
                    break
        except asyncio.CancelledError:
            self.close_reason = self.close_reason or "cancelled"
            raise
        except Exception as exc:  # a protocol bug of ours or of the server: keep it visible
            self.close_reason = f"{type(exc).__name__}: {exc}"
            self.errors.append(self.close_reason)
        finally:
            self.closed = True
            self._fail(ConnectionError(f"closed before sync: {self.close_reason}"))

    def _on_text(self, data: str) -> None:
        kind = data[:1]
        if kind == "4":
            pkt = sio_packet.Packet(encoded_packet=data[1:])
            if pkt.attachment_count:
                self._pending = pkt
            else:
                self._on_packet(pkt)
        elif kind == "2":  # Engine.IO ping -> pong
            self.pings += 1
            self.send_text("3" + data[1:])
        elif kind == "0":  # Engine.IO open -> Socket.IO CONNECT with auth
            self.t_open = perf_counter()
            self.send_text(f"40{self.ns},{json.dumps({'token': self.token})}")
        elif kind == "1":
            self.close_reason = "engine.io close"

    def _on_attachment(self, data: bytes) -> None:
        pkt = self._pending
        if pkt is None:
            raise RuntimeError("unexpected binary frame")
        if pkt.add_attachment(data):
            self._pending = None
            self._on_packet(pkt)

    def _on_packet(self, pkt: sio_packet.Packet) -> None:
        kind = pkt.packet_type
        if kind in (sio_packet.EVENT, sio_packet.BINARY_EVENT):
            name, *args = pkt.data
            if name == "sync-update":
                if self.client is not None:
                    self.client.on_update(self, args[0])
                else:
                    self.doc.apply_update(args[0])
            elif name == "sync-step-1":
                reply = self.doc.get_update(args[0])
                if pkt.id is not None:
                    self.send_binary(f"461-{self.ns},{pkt.id}[{PLACEHOLDER}]", reply)
                self._server_step1 = True
                self._check_synced()
            elif name == "error":
                self.errors.append(args[0] if args else None)
            # presence, role-changed, awareness-update: not needed here
        elif kind in (sio_packet.ACK, sio_packet.BINARY_ACK):
            callback = self._acks.pop(pkt.id, None)
            if callback is not None:
                callback(*(pkt.data or []))
        elif kind == sio_packet.CONNECT:
            self.t_connected = perf_counter()
            ack = self._next_ack
            self._next_ack += 1
            self._acks[ack] = self._on_own_step1
            self.send_binary(f'451-{self.ns},{ack}["sync-step-1",{PLACEHOLDER}]', self.doc.get_state())
        elif kind == sio_packet.CONNECT_ERROR:
            self._fail(Refused(str(pkt.data)))
        elif kind == sio_packet.DISCONNECT:
            self.close_reason = "socket.io disconnect"
            self._fail(ConnectionError("disconnected by the server"))

    def _on_own_step1(self, update: Any = None) -> None:
        if isinstance(update, bytes):
            self.doc.apply_update(update)
        self._own_step1 = True
        self._check_synced()

    def _check_synced(self) -> None:
        if self._server_step1 and self._own_step1 and not self.ready.done():
            self.t_synced = perf_counter()
            self.ready.set_result(None)


_ZERO_MASK = b"\x00\x00\x00\x00"


def ws_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked (zero key) WebSocket frame, client to server."""
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0xFE, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0xFF, n)
    return header + _ZERO_MASK + payload


def decode_state_vector(sv: bytes) -> dict[int, int]:
    def varuint(pos: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = sv[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value, pos

    count, pos = varuint(0)
    out = {}
    for _ in range(count):
        client, pos = varuint(pos)
        clock, pos = varuint(pos)
        out[client] = clock
    return out


# --- the load client (runs in a worker process; rooms are never split) -------------------------


def b64_floats(values: array.array[float]) -> str:
    return base64.b64encode(values.tobytes()).decode()


def unb64_floats(text: str) -> array.array[float]:
    out = array.array("d")
    out.frombytes(base64.b64decode(text))
    return out
