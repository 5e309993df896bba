"""Real-time collaboration benchmark: open-loop edit load on a real server process.

    uv run python -m bench.realtime                          # --preset all
    uv run python -m bench.realtime --preset throughput      # 10 rooms x 5 editors, rate sweep
    uv run python -m bench.realtime --preset latency         # 20 rooms x 10 editors x 5 edits/s
    uv run python -m bench.realtime --preset idle            # 5,000 idle sockets: RSS
    uv run python -m bench.realtime --preset open            # open a doc with a 10,000-update log
    uv run python -m bench.realtime --rooms 4 --editors 3 --rate 10 --duration 5   # custom

Workload (DESIGN.md, "Performance targets"): N rooms x M editors; every editor makes a small
edit of the room's shared Yjs document at F edits/s (fixed schedule, open loop) and every
OTHER editor of the room must observe it. Latency is measured per (edit, receiver) pair from
the moment the edit was written to the socket (primary) and from its scheduled instant.

The load client is lean on purpose: raw WebSockets (aiohttp) speaking Engine.IO v4 /
Socket.IO v5 by hand, one pycrdt Doc per editor. An edit sets key ``e<editor>`` of the map
``bench`` to a unique ASCII token ``T<room>:<editor>:<seq>;``; receivers find the tokens in
the raw bytes of every ``sync-update`` (a batched update merged by the server carries
several; merging keeps overwritten values, checked). Rooms are never split across client
processes, so send and receive times come from the same clock and process.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import base64
import contextlib
import heapq
import json
import math
import os
import random
import re
import shutil
import signal
import sqlite3
import struct
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from pycrdt import Doc, Map, TransactionEvent
from socketio import packet as sio_packet

from bench.common import (
    DEFAULT_POSTGRES_URL,
    REPO,
    Server,
    ServerError,
    ThrowawayDatabase,
    anonymous_token,
    create_loop,
    fmt,
    git_commit,
    git_dirty,
    latency_summary,
    machine_cpu,
    machine_info,
    print_rows,
    proc_cpu_seconds,
    proc_status_kb,
    raise_nofile_limit,
)

TARGET_P99_MS = 100.0
TARGET_THROUGHPUT_DPS = 8000.0
TARGET_IDLE_RSS_MB = 1024.0
TARGET_OPEN_MS = 100.0
GRACE_S = 5.0

PRESETS: dict[str, dict[str, Any]] = {
    "throughput": {"rooms": 10, "editors": 5, "rates": [20.0, 30.0, 40.0, 50.0, 60.0]},
    "latency": {"rooms": 20, "editors": 10, "rates": [5.0]},
    "idle": {"rooms": 500, "editors": 10},
    "open": {"updates": 10_000},
}
ALL_PRESETS = ("throughput", "latency", "idle", "open")

WS_PATH = "/socket.io/?EIO=4&transport=websocket"
PLACEHOLDER = '{"_placeholder":true,"num":0}'
TOKEN_FINDALL = re.compile(rb"T\d+:\d+:\d+;").findall
TEXT = aiohttp.WSMsgType.TEXT
BINARY = aiohttp.WSMsgType.BINARY
perf_counter = time.perf_counter


# --- the wire: one Socket.IO namespace on one raw WebSocket ---------------------------------


class Refused(Exception):
    pass


class Conn:
    """One y-socket.io client connection to one loop, Engine.IO/Socket.IO framed by hand.

    Handshake (what the y-socket.io provider does): on the server's ``sync-step-1`` (its
    state vector, with an ack id) we ack ``doc.get_update(sv)``; after the Socket.IO CONNECT
    we send our own ``sync-step-1`` (our state vector) and apply the update in its ack.
    Synced = both done. Every later ``sync-update`` goes to ``client.on_update``.
    """

    def __init__(self, client: LoadClient | None, room: int, index: int, loop_id: str, token: str) -> None:
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


def _b64(values: array.array[float]) -> str:
    return base64.b64encode(values.tobytes()).decode()


def _unb64(text: str) -> array.array[float]:
    out = array.array("d")
    out.frombytes(base64.b64decode(text))
    return out


class LoadClient:
    """Connections of some rooms, the open-loop edit schedule and the delivery bookkeeping."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.url = cfg["url"]
        self.rate = float(cfg.get("rate") or 0.0)
        self.apply = bool(cfg.get("apply", True))
        self.rng = random.Random(cfg.get("seed", 1))
        self.rooms: dict[int, dict[str, Any]] = {r["room"]: r for r in cfg["rooms"]}
        self.conns: list[Conn] = []
        self.by_room: dict[int, list[Conn]] = {}
        # token -> [scheduled, sent, receivers left, receivers seen (bits), measured, sender bit, room]
        self.edits: dict[bytes, list[Any]] = {}
        self.lat_sent = array.array("d")
        self.lat_sched = array.array("d")
        self.lat_at = array.array("d")  # send time of each sample, s since the window opened
        self.send_lag = array.array("d")
        self.t_meas0 = math.inf
        self.t_meas1 = math.inf
        self.sent_edits = 0
        self.measured_edits = 0
        self.expected_pairs = 0
        self.outstanding = 0
        self.obs_window = 0
        self.updates_in = 0
        self.updates_in_window = 0
        self.tokens_in = 0
        self.duplicates = 0
        self.echoes = 0
        self.misrouted = 0
        self.unknown = 0
        self.apply_errors = 0

    def build(self) -> None:
        for spec in self.rooms.values():
            conns = [Conn(self, spec["room"], i, spec["loop_id"], spec["token"]) for i in spec["indices"]]
            self.by_room[spec["room"]] = conns
            self.conns.extend(conns)

    async def connect_all(self, session: aiohttp.ClientSession, concurrency: int) -> dict[str, Any]:
        sem = asyncio.Semaphore(concurrency)
        times = array.array("d")
        failures: list[str] = []

        async def one(conn: Conn) -> None:
            async with sem:
                try:
                    await conn.open(session, self.url)
                except Exception as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
                    await conn.close()
                    return
                times.append(conn.t_synced - conn.t_start)

        started = perf_counter()
        await asyncio.gather(*(one(c) for c in self.conns))
        elapsed = perf_counter() - started
        for conns in self.by_room.values():
            live = [c for c in conns if not c.closed]
            for c in live:
                c.peers = len(live) - 1
        return {
            "event": "ready",
            "connected": len(times),
            "failed": len(failures),
            "failures": failures[:10],
            "connect_s": round(elapsed, 3),
            "connect_ms": _b64(times),
        }

    # --- hot paths ---

    def on_update(self, conn: Conn, data: bytes) -> None:
        now = perf_counter()
        self.updates_in += 1
        in_window = self.t_meas0 <= now < self.t_meas1
        if in_window:
            self.updates_in_window += 1
        edits = self.edits
        bit = conn.bit
        for token in TOKEN_FINDALL(data):
            self.tokens_in += 1
            rec = edits.get(token)
            if rec is None:
                self.unknown += 1
                continue
            if rec[6] != conn.room:
                self.misrouted += 1
                continue
            if rec[5] == bit:
                self.echoes += 1
                continue
            if rec[3] & bit:
                self.duplicates += 1
                continue
            rec[3] |= bit
            rec[2] -= 1
            if rec[4]:
                self.lat_sent.append(now - rec[1])
                self.lat_sched.append(now - rec[0])
                self.lat_at.append(rec[1] - self.t_meas0)
                self.outstanding -= 1
            if in_window:
                self.obs_window += 1
        if self.apply:
            try:
                conn.doc.apply_update(data)
            except Exception:
                self.apply_errors += 1

    def edit(self, conn: Conn, scheduled: float, measured: bool) -> None:
        seq = conn.seq
        conn.seq = seq + 1
        token = f"T{conn.room}:{conn.index}:{seq};"
        update = conn.local_edit(conn.key, token)
        sent = perf_counter()
        conn.send_binary(conn.update_header, update)
        conn.last_token = token
        self.edits[token.encode()] = [scheduled, sent, conn.peers, 0, measured, conn.bit, conn.room]
        self.sent_edits += 1
        if measured:
            self.measured_edits += 1
            self.expected_pairs += conn.peers
            self.outstanding += conn.peers
            self.send_lag.append(sent - scheduled)

    async def run(self, t0: float, warmup: float, duration: float, grace: float) -> dict[str, Any]:
        """Edit on schedule from t0 for warmup + duration s, then wait for stragglers."""
        self.t_meas0 = t_meas0 = t0 + warmup
        self.t_meas1 = t_stop = t_meas0 + duration
        editors = [c for c in self.conns if not c.closed]
        interval = 1.0 / self.rate
        heap = [(t0 + self.rng.random() * interval, i) for i in range(len(editors))]
        heapq.heapify(heap)
        edit = self.edit
        while heap:
            now = perf_counter()
            # Everything due now (a late wake-up catches up: nothing is skipped).
            while heap and heap[0][0] <= now:
                scheduled, i = heap[0]
                conn = editors[i]
                if not conn.closed:
                    try:
                        edit(conn, scheduled, t_meas0 <= scheduled < t_stop)
                    except Exception as exc:  # a transport closing under us
                        conn.errors.append(f"send: {type(exc).__name__}: {exc}")
                following = scheduled + interval
                if following < t_stop:
                    heapq.heapreplace(heap, (following, i))
                else:
                    heapq.heappop(heap)
            if heap:
                await asyncio.sleep(max(0.0, heap[0][0] - perf_counter()))
        sending_done = perf_counter()
        deadline = max(sending_done, t_stop) + grace
        while self.outstanding > 0 and perf_counter() < deadline:  # noqa: ASYNC110 - polling is fine here
            await asyncio.sleep(0.01)
        drained_after = perf_counter() - max(sending_done, t_stop)
        lost_edits = sum(1 for rec in self.edits.values() if rec[4] and rec[2] > 0)
        delivered = len(self.lat_sent)
        return {
            "event": "result",
            "editors": len(editors),
            "sent_edits": self.sent_edits,
            "measured_edits": self.measured_edits,
            "expected_pairs": self.expected_pairs,
            "delivered_pairs": delivered,
            "lost_pairs": self.expected_pairs - delivered,
            "lost_edits": lost_edits,
            "obs_window": self.obs_window,
            "updates_in": self.updates_in,
            "updates_in_window": self.updates_in_window,
            "tokens_in": self.tokens_in,
            "duplicates": self.duplicates,
            "echoes": self.echoes,
            "misrouted": self.misrouted,
            "unknown_tokens": self.unknown,
            "apply_errors": self.apply_errors,
            "sending_late_s": round(max(0.0, sending_done - t_stop), 3),
            "drain_s": round(drained_after, 3),
            "lat_sent": _b64(self.lat_sent),
            "lat_sched": _b64(self.lat_sched),
            "lat_at": _b64(self.lat_at),
            "send_lag": _b64(self.send_lag),
            **self.conn_health(),
        }

    def conn_health(self) -> dict[str, Any]:
        errors = [e for c in self.conns for e in c.errors]
        closed = [c for c in self.conns if c.closed and c.ready.done() and c.ready.exception() is None]
        return {
            "conns": len(self.conns),
            "alive": sum(1 for c in self.conns if not c.closed),
            "closed_after_sync": len(closed),
            "close_reasons": sorted({c.close_reason or "?" for c in closed})[:5],
            "pings_answered": sum(c.pings for c in self.conns),
            "server_errors": len(errors),
            "server_error_samples": [repr(e)[:200] for e in errors[:5]],
        }

    async def verify(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        """Convergence: a fresh socket per room fetches the server's document (sync-step-1
        from an empty state vector); it must hold every editor's last edit, and (when the
        editors applied what they received) every editor's map and state vector must equal it."""
        rooms_ok = 0
        problems: list[str] = []
        compared_clients = 0
        for room, conns in self.by_room.items():
            spec = self.rooms[room]
            verifier = Conn(None, room, 63, spec["loop_id"], spec["token"])
            try:
                await verifier.open(session, self.url)
            except Exception as exc:
                problems.append(f"room {room}: verifier could not sync: {exc}")
                continue
            try:
                server_map = verifier.map.to_py() or {}
                server_sv = decode_state_vector(verifier.doc.get_state())
                ok = True
                for c in conns:
                    if c.last_token is not None and server_map.get(c.key) != c.last_token:
                        ok = False
                        problems.append(
                            f"room {room}: server has {c.key}={server_map.get(c.key)!r}, "
                            f"last sent {c.last_token!r}"
                        )
                    if self.apply and not c.closed:
                        compared_clients += 1
                        if (c.map.to_py() or {}) != server_map:
                            ok = False
                            problems.append(f"room {room}: editor {c.index}'s map differs from the server's")
                        elif decode_state_vector(c.doc.get_state()) != server_sv:
                            ok = False
                            problems.append(f"room {room}: editor {c.index}'s state vector differs")
                rooms_ok += ok
            finally:
                await verifier.close()
        return {
            "rooms_checked": len(self.by_room),
            "rooms_converged": rooms_ok,
            "clients_compared": compared_clients,
            "convergence_problems": problems[:10],
        }

    async def close(self) -> None:
        sem = asyncio.Semaphore(200)

        async def one(c: Conn) -> None:
            async with sem:
                await c.close()

        await asyncio.gather(*(one(c) for c in self.conns))


# --- worker process --------------------------------------------------------------------------


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def _readline() -> dict[str, Any] | None:
    line = await asyncio.to_thread(sys.stdin.readline)
    return json.loads(line) if line.strip() else None


async def worker_main() -> None:
    raise_nofile_limit()
    cfg = await _readline()
    if cfg is None:
        return
    client = LoadClient(cfg)
    client.build()
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        _emit(await client.connect_all(session, int(cfg.get("concurrency", 50))))
        while True:
            cmd = await _readline()
            if cmd is None or cmd["cmd"] == "exit":
                break
            if cmd["cmd"] == "run":
                result = await client.run(cmd["t0"], cmd["warmup"], cmd["duration"], cmd["grace"])
                if cfg.get("verify", True):
                    result.update(await client.verify(session))
                else:
                    result.update(
                        rooms_checked=0, rooms_converged=0, clients_compared=0, convergence_problems=[]
                    )
                _emit(result)
            elif cmd["cmd"] == "report":
                _emit({"event": "report", **client.conn_health()})
        await client.close()


class WorkerProc:
    """A load-client process (``python -m bench.realtime --worker``), JSON lines on stdio."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, cfg: dict[str, Any]) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.realtime",
            "--worker",
            cwd=REPO,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 30,
        )
        self.send(cfg)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def send(self, obj: dict[str, Any]) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())

    async def recv(self, timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise ServerError(f"load client {self.name} exited ({await self.proc.wait()})")
        return json.loads(line)

    def cpu_seconds(self) -> float | None:
        return proc_cpu_seconds(self.pid) if self.proc is not None else None

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(Exception):
                assert proc.stdin is not None
                proc.stdin.write(b'{"cmd": "exit"}\n')
                await proc.stdin.drain()
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()


# --- a bare relay: the client-bound ceiling ------------------------------------------------


async def relay_main(port: int) -> None:
    """``--relay-server PORT``: the same wire protocol, no auth, no CRDT, no storage, no
    batching: each ``sync-update`` is forwarded as it came to the other sockets of its
    namespace. With ``--target relay`` the load runs against it to show what the load client
    itself can sustain on this machine."""
    from aiohttp import web

    rooms: dict[str, set[Any]] = {}
    open_packet = json.dumps(
        {"sid": "relay", "upgrades": [], "pingInterval": 25000, "pingTimeout": 20000, "maxPayload": 1000000}
    )

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        assert ws._writer is not None
        write = ws._writer._write_websocket_frame  # header + attachment stay adjacent
        write(("0" + open_packet).encode(), 1, 0)
        joined: list[str] = []
        pending: str | None = None  # the text header whose attachment comes next
        try:
            async for msg in ws:
                if msg.type is TEXT:
                    data = msg.data
                    if data.startswith("40"):
                        ns = data[2 : data.index(",")] if "," in data else data[2:]
                        rooms.setdefault(ns, set()).add(write)
                        joined.append(ns)
                        write(f'40{ns},{{"sid":"{id(ws)}"}}'.encode(), 1, 0)
                        write(f'451-{ns},1["sync-step-1",{PLACEHOLDER}]'.encode(), 1, 0)
                        write(b"\x00", 2, 0)
                    elif data.startswith("45") or data.startswith("46"):
                        pending = data
                elif msg.type is BINARY and pending is not None:
                    header, pending = pending, None
                    ns = header[4 : header.index(",")]
                    rest = header[header.index(",") + 1 :]
                    if rest.startswith('["sync-update"'):
                        encoded = header.encode()
                        for other in rooms.get(ns, ()):
                            if other is not write:
                                with contextlib.suppress(Exception):
                                    other(encoded, 1, 0)
                                    other(msg.data, 2, 0)
                    elif '"sync-step-1"' in rest:  # our ack: an empty update
                        ack = rest[: rest.index("[")]
                        write(f"461-{ns},{ack}[{PLACEHOLDER}]".encode(), 1, 0)
                        write(b"\x00\x00", 2, 0)
                elif msg.type not in (TEXT, BINARY):
                    break
        finally:
            for ns in joined:
                rooms.get(ns, set()).discard(write)
        return ws

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/socket.io/", handler)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


class RelayServer(Server):
    """The bare relay in its own process, with the interface of :class:`Server`."""

    async def start(self, startup_timeout: float = 30.0) -> None:
        started = perf_counter()
        with self.log_path.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.realtime", "--relay-server", str(self.port),
                cwd=REPO, stdout=log, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + startup_timeout
        async with aiohttp.ClientSession() as session:
            while True:
                if self.proc.returncode is not None:
                    raise ServerError(f"relay exited with {self.proc.returncode}:\n{self.log_tail()}")
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    async with session.get(self.base_url + "/healthz") as resp:
                        if resp.status == 200:
                            self.startup_s = round(perf_counter() - started, 2)
                            return
                if time.monotonic() > deadline:
                    raise ServerError("relay not up")
                await asyncio.sleep(0.1)


# --- orchestration ---------------------------------------------------------------------------


class Bench:
    """One server (per preset) plus helpers to seed rooms and run load-client processes."""

    def __init__(self, args: argparse.Namespace, extra_env: dict[str, str] | None = None) -> None:
        self.args = args
        self.pg = ThrowawayDatabase(args.postgres_url) if args.backend == "postgres" else None
        env = {
            "RT_MAX_MESSAGES_PER_SECOND": str(args.max_messages_per_second),
            # Every editor of a room signs in with the room owner's token.
            "RT_MAX_CONNECTIONS_PER_USER": "10000",
        }
        env.update(extra_env or {})
        env.update(args.server_env)
        self.extra_env = env
        self.server: Server | None = None
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Bench:
        if self.pg:
            await self.pg.create()
        if self.args.target == "relay":
            self.server = RelayServer("relay", None)
        else:
            self.server = Server(
                self.args.backend, self.pg.url if self.pg else None, extra_env=self.extra_env
            )
        print(
            f"  starting {self.args.target} on {self.server.base_url} ({self.args.backend}) ...", flush=True
        )
        await self.server.start()
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16))
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self.session is not None:
                await self.session.close()
            if self.server is not None:
                if self.args.server_log:
                    Path(self.args.server_log).mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
                    shutil.copy(self.server.log_path, Path(self.args.server_log) / self.server.log_path.name)
                code = await self.server.stop()
                print(f"  server stopped (exit {code})", flush=True)
        finally:
            if self.pg:
                await self.pg.drop()

    @property
    def ws_url(self) -> str:
        assert self.server is not None
        return f"ws://127.0.0.1:{self.server.port}{WS_PATH}"

    async def seed(self, rooms: int, rooms_per_user: int = 1) -> list[dict[str, Any]]:
        """One loop per room; the editors of a room use its owner's token."""
        assert self.server is not None and self.session is not None
        if self.args.target == "relay":  # nothing to create: any namespace works
            return [{"room": r, "loop_id": str(uuid.uuid4()), "token": "relay"} for r in range(rooms)]
        base = self.server.base_url
        sem = asyncio.Semaphore(8)
        rng = random.Random(42)
        users = math.ceil(rooms / rooms_per_user)

        async def token() -> str:
            async with sem:
                return await anonymous_token(self.session, base)  # type: ignore[arg-type]

        tokens = await asyncio.gather(*(token() for _ in range(users)))

        async def loop(room: int) -> dict[str, Any]:
            owner = tokens[room // rooms_per_user]
            async with sem:
                loop_id = await create_loop(self.session, base, owner, room, rng)  # type: ignore[arg-type]
            return {"room": room, "loop_id": loop_id, "token": owner}

        return list(await asyncio.gather(*(loop(r) for r in range(rooms))))

    async def check_rest(self, rooms: list[dict[str, Any]]) -> dict[str, Any]:
        """Every loop still reads back through REST (content comes from the live document)."""
        assert self.server is not None and self.session is not None
        statuses: dict[str, int] = {}
        if self.args.target == "relay":
            return statuses
        for spec in rooms:
            async with self.session.get(
                f"{self.server.base_url}/api/loops/{spec['loop_id']}",
                headers={"Authorization": f"Bearer {spec['token']}"},
            ) as resp:
                await resp.read()
                statuses[str(resp.status)] = statuses.get(str(resp.status), 0) + 1
        return statuses

    async def spawn(
        self, rooms: list[dict[str, Any]], indices: list[int], rate: float, procs: int, tag: str
    ) -> tuple[list[WorkerProc], list[dict[str, Any]]]:
        """Start ``procs`` load clients (rooms dealt round-robin) and wait until all synced."""
        groups: list[list[dict[str, Any]]] = [[] for _ in range(max(1, min(procs, len(rooms))))]
        for n, spec in enumerate(rooms):
            groups[n % len(groups)].append({**spec, "indices": indices})
        workers = [WorkerProc(f"{tag}-{n}") for n in range(len(groups))]
        try:
            for n, (worker, group) in enumerate(zip(workers, groups, strict=True)):
                await worker.start(
                    {
                        "url": self.ws_url,
                        "rooms": group,
                        "rate": rate,
                        "apply": self.args.apply,
                        "seed": n + 1,
                        "concurrency": self.args.connect_concurrency,
                        "verify": self.args.target == "server",
                    }
                )
            readies = list(await asyncio.gather(*(w.recv(timeout=600) for w in workers)))
        except BaseException:
            await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)
            raise
        return workers, readies


def _sleep_until(t: float) -> Any:
    return asyncio.sleep(max(0.0, t - perf_counter()))


async def _db_cpu(pg: ThrowawayDatabase | None) -> dict[int, float | None]:
    if pg is None:
        return {}
    return {pid: proc_cpu_seconds(pid) for pid in await pg.backend_pids()}


def _db_cpu_delta(before: dict[int, float | None], after: dict[int, float | None]) -> float:
    return sum((a or 0.0) - (before.get(pid) or 0.0) for pid, a in after.items() if a is not None)


async def run_edit_load(
    bench: Bench, rooms: list[dict[str, Any]], editors: int, rate: float, label: str
) -> dict[str, Any]:
    args = bench.args
    server = bench.server
    assert server is not None
    offered = len(rooms) * editors * (editors - 1) * rate
    print(
        f"  {label}: {len(rooms)} rooms x {editors} editors x {rate:g} edits/s "
        f"(offered {offered:,.0f} deliveries/s): connecting ...",
        flush=True,
    )
    workers, readies = await bench.spawn(rooms, list(range(editors)), rate, args.client_procs, label)
    py_spy: asyncio.subprocess.Process | None = None
    try:
        connected = sum(r["connected"] for r in readies)
        failed = sum(r["failed"] for r in readies)
        if failed:
            print(f"  {label}: {failed} connections failed: {readies[0]['failures'][:3]}", flush=True)
        t0 = perf_counter() + 0.3
        for w in workers:
            w.send(
                {"cmd": "run", "t0": t0, "warmup": args.warmup, "duration": args.duration, "grace": GRACE_S}
            )
        t_meas0 = t0 + args.warmup
        t_meas1 = t_meas0 + args.duration
        await _sleep_until(t_meas0)
        srv0, cli0, mach0 = server.cpu_seconds(), [w.cpu_seconds() for w in workers], machine_cpu()
        db0 = await _db_cpu(bench.pg)
        if args.py_spy:
            py_spy = await start_py_spy(args.py_spy, label, server.pid, args.duration)
        await _sleep_until(t_meas1)
        srv1, cli1, mach1 = server.cpu_seconds(), [w.cpu_seconds() for w in workers], machine_cpu()
        db1 = await _db_cpu(bench.pg)
        print(f"  {label}: measured {args.duration:g} s; waiting for stragglers ...", flush=True)
        results = list(await asyncio.gather(*(w.recv(timeout=120 + GRACE_S) for w in workers)))
        rss_kb = server.rss_kb()
        hwm_kb = proc_status_kb(server.pid, "VmHWM")
    finally:
        await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)
        await stop_py_spy(py_spy, args.py_spy, label, wait=True)
    rest_statuses = await bench.check_rest(rooms)

    def total(key: str) -> int:
        return sum(int(r[key]) for r in results)

    lat_sent = array.array("d")
    lat_sched = array.array("d")
    lat_at = array.array("d")
    send_lag = array.array("d")
    for r in results:
        lat_sent.extend(_unb64(r["lat_sent"]))
        lat_sched.extend(_unb64(r["lat_sched"]))
        lat_at.extend(_unb64(r["lat_at"]))
        send_lag.extend(_unb64(r["send_lag"]))
    server_cpu = None if srv0 is None or srv1 is None else srv1 - srv0
    client_cpu = sum((b or 0.0) - (a or 0.0) for a, b in zip(cli0, cli1, strict=True))
    busy = mach1[0] - mach0[0]
    machine_total = max(mach1[1] - mach0[1], 1e-9)
    db_cpu = _db_cpu_delta(db0, db1) if bench.pg else None
    obs = total("obs_window")
    duration = args.duration
    delivered = total("delivered_pairs")
    lat = latency_summary(lat_sent)
    lost_pairs = total("lost_pairs")
    rooms_converged = total("rooms_converged")
    return {
        "label": label,
        "backend": args.backend,
        "rooms": len(rooms),
        "editors_per_room": editors,
        "rate_per_editor": rate,
        "duration_s": duration,
        "warmup_s": args.warmup,
        "client_procs": len(workers),
        "apply_on_receive": args.apply,
        "connections": connected,
        "connect_failures": failed,
        "offered_deliveries_per_s": round(offered, 1),
        "deliveries_per_s": round(obs / duration, 1),
        "measured_edits": total("measured_edits"),
        "expected_pairs": total("expected_pairs"),
        "delivered_pairs": delivered,
        "lost_pairs": lost_pairs,
        "lost_edits": total("lost_edits"),
        "duplicates": total("duplicates"),
        "echoes": total("echoes"),
        "misrouted": total("misrouted"),
        "unknown_tokens": total("unknown_tokens"),
        "latency_ms": lat,
        "latency_from_scheduled_ms": latency_summary(lat_sched),
        "send_lag_ms": latency_summary(send_lag),
        # p50/p99/max of the edits sent in each second of the window: periodic stalls show here
        "latency_by_second_ms": by_second(lat_at, lat_sent, duration),
        "updates_received_per_s": round(total("updates_in_window") / duration, 1),
        "edits_per_received_update": round(total("tokens_in") / max(total("updates_in"), 1), 2),
        "server_cpu_s": None if server_cpu is None else round(server_cpu, 3),
        "server_cpu_util": None if server_cpu is None else round(server_cpu / duration, 3),
        "server_cpu_ms_per_1000_deliveries": (
            round(server_cpu * 1e6 / obs, 2) if server_cpu is not None and obs else None
        ),
        "est_max_deliveries_per_s_one_core": round(obs / server_cpu) if server_cpu and obs else None,
        "db_cpu_s": None if db_cpu is None else round(db_cpu, 3),
        "client_cpu_s": round(client_cpu, 3),
        "client_cpu_util": round(client_cpu / duration, 3),
        "machine_cpu_busy_pct": round(100 * busy / machine_total, 1),
        # CPU used by other processes of the machine during the window, in cores: above
        # ~0.1 something else competed with the server and the latencies are suspect.
        "other_cpu_util": round((busy - (server_cpu or 0.0) - client_cpu - (db_cpu or 0.0)) / duration, 3),
        "server_rss_mb": None if rss_kb is None else round(rss_kb / 1024, 1),
        "server_peak_rss_mb": None if hwm_kb is None else round(hwm_kb / 1024, 1),
        "sending_late_s": max(r["sending_late_s"] for r in results),
        "drain_s": max(r["drain_s"] for r in results),
        "conns_alive_at_end": total("alive"),
        "conns_closed_after_sync": total("closed_after_sync"),
        "server_error_events": total("server_errors"),
        "server_error_samples": [s for r in results for s in r["server_error_samples"]][:5],
        "rooms_converged": rooms_converged,
        "rooms_checked": total("rooms_checked"),
        "clients_compared": total("clients_compared"),
        "convergence_problems": [p for r in results for p in r["convergence_problems"]][:10],
        "rest_get_statuses": rest_statuses,
        "pass_p99": lat["p99"] is not None and lat["p99"] <= TARGET_P99_MS,
        "nothing_lost": lost_pairs == 0,
        "converged": rooms_converged == len(rooms) or args.target == "relay",
        "target": args.target,
    }


def by_second(at: array.array[float], values: array.array[float], duration: float) -> list[list[float]]:
    """[second, p50, p99, max] (ms) of the samples sent in each second of the window."""
    seconds: list[list[float]] = [[] for _ in range(max(1, math.ceil(duration)))]
    for t, v in zip(at, values, strict=True):
        i = int(t)
        if 0 <= i < len(seconds):
            seconds[i].append(v * 1000)
    out = []
    for i, vs in enumerate(seconds):
        if vs:
            vs.sort()
            out.append([i, round(vs[len(vs) // 2], 1), round(vs[min(len(vs) - 1, int(len(vs) * 0.99))], 1),
                        round(vs[-1], 1)])  # fmt: skip
    return out


async def start_py_spy(
    out_dir: str, label: str, pid: int, duration: float, rate: int = 100
) -> asyncio.subprocess.Process | None:
    """py-spy record on the server for the measured window (needs `uv run --with py-spy`)."""
    exe = shutil.which("py-spy")
    if exe is None:
        print("  py-spy not found: run with `uv run --with py-spy python -m bench.realtime ...`", flush=True)
        return None
    Path(out_dir).mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - instant, before the window
    base = Path(out_dir) / f"server-{label}"
    return await asyncio.create_subprocess_exec(
        exe, "record", "-p", str(pid), "-d", str(max(1, int(duration))), "-r", str(rate),
        "--format", "raw", "-o", f"{base}.txt", "--nonblocking",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def stop_py_spy(
    proc: asyncio.subprocess.Process | None, out_dir: str | None, label: str, wait: bool = False
) -> None:
    """End a py-spy recording (SIGINT makes it write its file), summarize it."""
    if proc is None or out_dir is None:
        return
    if not wait and proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(proc.wait(), 30)
    raw = Path(out_dir) / f"server-{label}.txt"
    if raw.exists():
        summary = summarize_py_spy(raw)
        raw.with_suffix(".summary.txt").write_text(summary + "\n")
        print("\n".join(summary.splitlines()[:16]), flush=True)


# Where the server's time goes, from a py-spy raw profile: each stack goes to the first
# bucket whose marker appears in it (checked leaf first for "idle").
PROFILE_BUCKETS: list[tuple[str, tuple[str, ...]]] = [
    ("SQLite C calls (aiosqlite thread)", ("_connection_worker_thread",)),
    ("SQL statement build/compile/bind (SQLAlchemy)", ("sqlalchemy/",)),
    ("snapshots / maintenance", ("DocumentService._maintain", "DocumentService.snapshot")),
    ("document load: snapshot + log replay (DocumentService._load)", ("DocumentService._load",)),
    ("socket connect handler: auth, role, join, sync-step-1 (_on_connect)", ("_on_connect",)),
    ("sync-update: CRDT apply (Room.apply)", ("Room.apply",)),
    ("update log writer task (excl. SQL)", ("UpdateLog._run",)),
    ("sync-update handler, rest (rate limit, log append wait)", ("_on_sync_update", "client_update",
                                                                  "_persist_and_relay", "UpdateLog.append")),
    ("fan-out: Room._flush (merge, encode once, enqueue)", ("Room._flush", "queue_broadcast")),
    ("engine.io writer tasks (queue -> ws.send)", ("_websocket_handler.<locals>.writer", "WebSocket.send",
                                                    "send_frame", "send_str", "send_bytes")),
    ("socket.io/engine.io receive + decode + task per event", ("_websocket_handler", "_handle_eio_message",
                                                               "socketio/packet.py", "engineio/packet.py",
                                                               "_trigger_event", "start_background_task",
                                                               "web_ws.py")),
    ("socket reads/writes (asyncio transports)", ("_read_ready", "_SelectorSocketTransport.write",
                                                 "data_received")),
]  # fmt: skip
# py-spy --nonblocking leaves out sleeping threads; samples whose leaf is a wait were taken
# while the thread was runnable (waking up): kept, in their own bucket.
WAIT_LEAVES = (
    "EpollSelector.select",
    "aiosqlite/core.py:59)",
    "SimpleQueue.get",
    "Condition.wait",
    "Thread.wait",
)


def summarize_py_spy(path: Path, top: int = 25) -> str:
    """Buckets and top functions of a ``py-spy record --format raw --nonblocking`` file."""
    import collections

    buckets: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = idle = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        leaf = frames[-1]
        total += n
        if any(marker in leaf for marker in WAIT_LEAVES):
            idle += n
            buckets["waking up: epoll_wait / aiosqlite queue (runnable)"] += n
            leaves[leaf] += n
            continue
        leaves[leaf] += n
        for name in {re.sub(r" \(.*", "", f) for f in frames if f}:
            inclusive[name] += n
        for bucket, markers in PROFILE_BUCKETS:
            if any(marker in frame for frame in frames for marker in markers):
                buckets[bucket] += n
                break
        else:
            buckets["asyncio loop / other"] += n
    if not total:
        return f"{path}: no samples"
    out = [
        f"{path}: {total} samples of running threads (sleeping ones are not sampled), "
        f"{idle} of them in a wait call; % of samples",
        "",
        "where:",
    ]
    out += [f"  {100 * n / total:5.1f}%  {name}" for name, n in buckets.most_common()]
    out += ["", "self (leaf frame):"]
    out += [f"  {100 * n / total:5.1f}%  {name}" for name, n in leaves.most_common(top)]
    skip = (
        "<module>", "Command.", "Group.invoke", "Context.invoke", "serve", "run_app", "BaseEventLoop.run_",
        "BaseEventLoop._run_once", "Handle._run", "_run_module", "_run_code", "main", "run",
    )  # fmt: skip
    out += ["", "inclusive (function and what it calls):"]
    shown = [(name, n) for name, n in inclusive.most_common() if not name.startswith(skip)][: top * 2]
    out += [f"  {100 * n / total:5.1f}%  {name}" for name, n in shown]
    return "\n".join(out)


# --- presets --------------------------------------------------------------------------------


async def preset_edit(
    args: argparse.Namespace, name: str, rooms_n: int, editors: int, rates: list[float]
) -> dict[str, Any]:
    runs = []
    async with Bench(args) as bench:
        rooms = await bench.seed(rooms_n)
        for rate in rates:
            label = f"{name}-{rooms_n}x{editors}x{rate:g}"
            r = await run_edit_load(bench, rooms, editors, rate, label)
            runs.append(r)
            print_edit_line(r)
            await asyncio.sleep(1.0)
    out: dict[str, Any] = {"runs": runs}
    passing = [r for r in runs if r["pass_p99"] and r["nothing_lost"] and r["converged"]]
    if name == "throughput":
        best = max(passing, key=lambda r: r["deliveries_per_s"], default=None)
        out["verdict"] = {
            "target": (
                f">= {TARGET_THROUGHPUT_DPS:,.0f} deliveries/s at p99 <= {TARGET_P99_MS:g} ms, nothing lost"
            ),
            "max_passing_rate_per_editor": best["rate_per_editor"] if best else None,
            "max_passing_deliveries_per_s": best["deliveries_per_s"] if best else None,
            "pass": bool(best and best["deliveries_per_s"] >= TARGET_THROUGHPUT_DPS * 0.98),
        }
    elif name == "latency":
        r = runs[-1]
        out["verdict"] = {
            "target": f"p99 <= {TARGET_P99_MS:g} ms, every room converged, nothing lost",
            "p99_ms": r["latency_ms"]["p99"],
            "pass": bool(r["pass_p99"] and r["converged"] and r["nothing_lost"]),
        }
    else:
        out["verdict"] = {"pass": bool(runs) and len(passing) == len(runs)}
    return out


async def preset_idle(args: argparse.Namespace, rooms_n: int, editors: int) -> dict[str, Any]:
    """Mostly idle sockets: each connects, syncs, then only answers Engine.IO pings."""
    workers: list[WorkerProc] = []
    async with Bench(args) as bench:
        server = bench.server
        assert server is not None
        rooms = await bench.seed(rooms_n, rooms_per_user=10)
        await asyncio.sleep(1.0)
        rss0 = server.rss_kb() or 0
        connect_cpu0 = server.cpu_seconds()
        try:
            print(f"  idle: {rooms_n} rooms, first socket each ...", flush=True)
            t = perf_counter()
            first, ready_a = await bench.spawn(rooms, [0], 0.0, args.client_procs, "idle-a")
            workers += first
            connect_a_s = perf_counter() - t
            await asyncio.sleep(2.0)
            rss_a = server.rss_kb() or 0
            print(f"  idle: {rooms_n} x {editors - 1} more sockets ...", flush=True)
            t = perf_counter()
            spy = await start_py_spy(args.py_spy, "idle-connect", server.pid, 600) if args.py_spy else None
            rest, ready_b = await bench.spawn(
                rooms, list(range(1, editors)), 0.0, args.client_procs, "idle-b"
            )
            workers += rest
            connect_b_s = perf_counter() - t
            await stop_py_spy(spy, args.py_spy, "idle-connect")
            await asyncio.sleep(2.0)
            rss_b = server.rss_kb() or 0
            readies = ready_a + ready_b
            connected = sum(r["connected"] for r in readies)
            connect_cpu1 = server.cpu_seconds()
            print(f"  idle: {connected} sockets synced; holding {args.idle_hold:g} s ...", flush=True)
            cpu0, mach0 = server.cpu_seconds(), machine_cpu()
            spy = (
                await start_py_spy(args.py_spy, "idle-hold", server.pid, args.idle_hold)
                if args.py_spy
                else None
            )
            await asyncio.sleep(args.idle_hold)
            cpu1, mach1 = server.cpu_seconds(), machine_cpu()
            await stop_py_spy(spy, args.py_spy, "idle-hold")
            rss_c = server.rss_kb() or 0
            hwm = proc_status_kb(server.pid, "VmHWM") or 0
            for w in workers:
                w.send({"cmd": "report"})
            reports = list(await asyncio.gather(*(w.recv(timeout=60) for w in workers)))
            client_rss = sum(proc_status_kb(w.pid, "VmRSS") or 0 for w in workers)
        finally:
            await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)
    connect_ms = array.array("d")
    for r in readies:
        connect_ms.extend(_unb64(r["connect_ms"]))
    n_b = sum(r["connected"] for r in ready_b)
    hold_cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
    result = {
        "backend": args.backend,
        "rooms": rooms_n,
        "sockets_per_room": editors,
        "client_procs": len(ready_a),
        "connected": connected,
        "connect_failures": sum(r["failed"] for r in readies),
        "connect_failure_samples": [f for r in readies for f in r["failures"]][:5],
        "connect_to_synced_ms": latency_summary(connect_ms),
        "connect_rate_per_s": round(connected / max(connect_a_s + connect_b_s, 1e-9), 1),
        "server_cpu_ms_per_connect": (
            round((connect_cpu1 - connect_cpu0) * 1000 / max(connected, 1), 2)
            if connect_cpu0 is not None and connect_cpu1 is not None
            else None
        ),
        "server_rss_mb_before": round(rss0 / 1024, 1),
        "server_rss_mb_one_socket_per_room": round(rss_a / 1024, 1),
        "server_rss_mb_all_sockets": round(rss_b / 1024, 1),
        "server_rss_mb_after_hold": round(rss_c / 1024, 1),
        "server_peak_rss_mb": round(hwm / 1024, 1),
        "rss_kb_per_socket_incl_rooms": round((rss_c - rss0) / max(connected, 1), 1),
        "rss_kb_per_extra_socket": round((rss_b - rss_a) / max(n_b, 1), 1),
        "rss_kb_per_loaded_room_with_one_socket": round((rss_a - rss0) / max(rooms_n, 1), 1),
        "hold_s": args.idle_hold,
        "server_cpu_util_while_idle": None if hold_cpu is None else round(hold_cpu / args.idle_hold, 4),
        "machine_cpu_busy_pct": round(100 * (mach1[0] - mach0[0]) / max(mach1[1] - mach0[1], 1e-9), 1),
        "alive_after_hold": sum(r["alive"] for r in reports),
        "pings_answered": sum(r["pings_answered"] for r in reports),
        "server_error_events": sum(r["server_errors"] for r in reports),
        "client_rss_mb": round(client_rss / 1024, 1),
    }
    result["pass"] = (
        result["alive_after_hold"] == rooms_n * editors
        and result["server_rss_mb_after_hold"] < TARGET_IDLE_RSS_MB
    )
    return {
        "result": result,
        "verdict": {
            "target": f"{rooms_n * editors} idle sockets, RSS < {TARGET_IDLE_RSS_MB:g} MB",
            "pass": result["pass"],
        },
    }


async def _count_log_rows(server: Server, pg: ThrowawayDatabase | None) -> int | None:
    query = "SELECT count(*) FROM document_updates"
    if pg is not None:
        return int(await pg.fetchval(query))
    with contextlib.closing(
        sqlite3.connect(f"file:{server.sqlite_path}?mode=ro", uri=True, timeout=10)
    ) as db:
        return int(db.execute(query).fetchone()[0])


async def _timed_open(
    session: aiohttp.ClientSession, url: str, spec: dict[str, Any], index: int
) -> tuple[Conn, dict[str, Any]]:
    conn = Conn(None, 0, index, spec["loop_id"], spec["token"])
    await conn.open(session, url)
    ms = 1000.0
    return conn, {
        "total_ms": round((conn.t_synced - conn.t_start) * ms, 2),
        "websocket_ms": round((conn.t_ws - conn.t_start) * ms, 2),
        "namespace_connect_ms": round((conn.t_connected - conn.t_ws) * ms, 2),
        "sync_ms": round((conn.t_synced - conn.t_connected) * ms, 2),
    }


async def _warm_up(session: aiohttp.ClientSession, url: str, spec: dict[str, Any]) -> None:
    """Make a fresh server process warm (DB pool, code paths) on another, small document."""
    for index in (10, 11):
        conn = Conn(None, 1, index, spec["loop_id"], spec["token"])
        await conn.open(session, url)
        await conn.close()


async def preset_open(args: argparse.Namespace, updates: int) -> dict[str, Any]:
    """Opening a document whose durable log holds ``updates`` entries.

    Server 1 receives the updates (snapshots disabled) and is killed with SIGKILL, so the
    log is never folded. Then, ``trials`` times: a fresh server process on the same data,
    warmed up on another document, measures connect -> synced of the first socket (the room
    loads snapshot + the whole log) and of a second one (room already loaded), and is
    killed again. Last, a server with 1 s snapshots folds the log, unloads the room, and the
    first socket is timed again (the same history, now one snapshot).
    """
    pg = ThrowawayDatabase(args.postgres_url) if args.backend == "postgres" else None
    keys = 64
    trials = 3
    servers: list[Server] = []
    data_dir: Path | None = None
    env = {
        "RT_MAX_MESSAGES_PER_SECOND": str(max(args.max_messages_per_second, 100_000)),
        "RT_MAX_CONNECTIONS_PER_USER": "10000",
        "SNAPSHOT_INTERVAL_SECONDS": "1000000",
        "ROOM_IDLE_SECONDS": "1000000",
    }

    async def start(extra: dict[str, str] | None = None) -> Server:
        first = servers[0] if servers else None
        server = Server(
            args.backend,
            pg.url if pg else None,
            extra_env={**env, **(extra or {})},
            data_dir=first.data_dir if first else None,
            secret=first.secret if first else None,
            keep_data=True,
        )
        servers.append(server)
        await server.start()
        return server

    def url(server: Server) -> str:
        return f"ws://127.0.0.1:{server.port}{WS_PATH}"

    try:
        if pg:
            await pg.create()
        async with aiohttp.ClientSession() as session:
            first = await start()
            data_dir = first.data_dir
            print(f"  open: server on {first.base_url}; writing {updates:,} updates ...", flush=True)
            token = await anonymous_token(session, first.base_url)
            loop_id = await create_loop(session, first.base_url, token, 0, random.Random(1))
            other_id = await create_loop(session, first.base_url, token, 1, random.Random(2))
            spec = {"room": 0, "loop_id": loop_id, "token": token}
            other = {"room": 1, "loop_id": other_id, "token": token}
            client = LoadClient({"url": url(first), "rooms": [{**spec, "indices": [0, 1]}], "apply": True})
            client.build()
            ready = await client.connect_all(session, 2)
            if ready["failed"]:
                raise ServerError(f"open: could not connect: {ready['failures']}")
            writer = client.conns[0]
            expected: dict[str, str] = {}
            t = perf_counter()
            for start_i in range(0, updates, 200):  # in bursts, each relayed (= durable) before the next
                for i in range(start_i, min(start_i + 200, updates)):
                    token_s = f"T0:0:{i};"
                    key = f"k{i % keys}"
                    update = writer.local_edit(key, token_s)
                    writer.send_binary(writer.update_header, update)
                    client.edits[token_s.encode()] = [0.0, perf_counter(), 1, 0, True, writer.bit, 0]
                    client.outstanding += 1
                    expected[key] = token_s
                deadline = perf_counter() + 30
                while client.outstanding > 0 and perf_counter() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
                if client.outstanding > 0:
                    raise ServerError(f"open: {client.outstanding} updates never relayed")
            write_s = perf_counter() - t
            log_rows = await _count_log_rows(first, pg)
            print(f"  open: relayed in {write_s:.1f} s; log rows {log_rows}; kill -9", flush=True)
            await first.kill()  # no final snapshot: the log stays as it is
            await client.close()

            from_log: list[dict[str, Any]] = []
            warm: list[dict[str, Any]] = []
            for _ in range(trials):
                server = await start()
                await _warm_up(session, url(server), other)
                label = f"open-cold-from-log-{len(from_log) + 1}"
                spy = (
                    await start_py_spy(args.py_spy, label, server.pid, 5, rate=2000) if args.py_spy else None
                )
                if spy is not None:
                    await asyncio.sleep(1.0)  # attached
                conn, timing = await _timed_open(session, url(server), spec, 5)
                await stop_py_spy(spy, args.py_spy, label)
                timing["content_ok"] = (conn.map.to_py() or {}) == expected
                timing["log_rows"] = await _count_log_rows(server, pg)
                from_log.append(timing)
                conn2, timing2 = await _timed_open(session, url(server), spec, 6)
                warm.append(timing2)
                await server.kill()
                await conn.close()
                await conn2.close()

            server = await start({"SNAPSHOT_INTERVAL_SECONDS": "1", "ROOM_IDLE_SECONDS": "1"})
            await _warm_up(session, url(server), other)
            conn, _ = await _timed_open(session, url(server), spec, 5)
            await conn.close()
            rows_after: int | None = None
            from_snapshot: list[dict[str, Any]] = []
            for attempt in range(trials):
                deadline = perf_counter() + 20
                while perf_counter() < deadline:
                    await asyncio.sleep(0.5)
                    rows_after = await _count_log_rows(server, pg)
                    if rows_after == 0:
                        break
                await asyncio.sleep(3.0)  # ROOM_IDLE_SECONDS=1 + maintenance ticks: unloaded
                conn, timing = await _timed_open(session, url(server), spec, 7 + attempt)
                timing["content_ok"] = (conn.map.to_py() or {}) == expected
                from_snapshot.append(timing)
                await conn.close()
    finally:
        for server in reversed(servers):
            with contextlib.suppress(Exception):
                await server.stop()
        if data_dir is not None:
            shutil.rmtree(data_dir, ignore_errors=True)
        if pg:
            await pg.drop()

    def summary(timings: list[dict[str, Any]]) -> dict[str, Any]:
        totals = sorted(t["total_ms"] for t in timings)
        return {"median_total_ms": totals[len(totals) // 2], "max_total_ms": totals[-1], "trials": timings}

    result = {
        "backend": args.backend,
        "updates_written": updates,
        "distinct_keys": keys,
        "write_s": round(write_s, 2),
        "log_rows_at_kill": log_rows,
        "log_rows_after_snapshot": rows_after,
        "cold_open_from_log": summary(from_log),
        "warm_open_room_loaded": summary(warm),
        "cold_open_from_snapshot": summary(from_snapshot),
    }
    worst = result["cold_open_from_log"]["max_total_ms"]
    ok = all(t["content_ok"] for t in from_log + from_snapshot) and worst < TARGET_OPEN_MS
    return {
        "result": result,
        "verdict": {
            "target": (
                f"open a document with a {updates:,}-update log < {TARGET_OPEN_MS:g} ms (connect to synced)"
            ),
            "cold_open_from_log_worst_ms": worst,
            "pass": ok,
        },
    }


# --- report ----------------------------------------------------------------------------------


def print_edit_line(r: dict[str, Any]) -> None:
    lat = r["latency_ms"]
    print(
        f"  {r['label']}: {r['deliveries_per_s']:,.0f}/{r['offered_deliveries_per_s']:,.0f} deliveries/s, "
        f"p50 {fmt(lat['p50'])} p99 {fmt(lat['p99'])} max {fmt(lat['max'])} ms, "
        f"lost {r['lost_pairs']}, srv CPU {fmt((r['server_cpu_util'] or 0) * 100, 0)}%, "
        f"cli CPU {fmt(r['client_cpu_util'] * 100, 0)}%, other CPU {fmt(r['other_cpu_util'] * 100, 0)}%, "
        f"converged {r['rooms_converged']}/{r['rooms']}",
        flush=True,
    )


def print_edit_table(runs: list[dict[str, Any]]) -> None:
    header = (
        "scenario", "offered/s", "deliv/s", "p50", "p95", "p99", "max", "p99 sched", "lost",
        "conv", "srv CPU%", "ms/1k deliv", "cli CPU%", "other CPU%", "edits/upd", "RSS MB", "pass",
    )  # fmt: skip
    rows = [header]
    for r in runs:
        lat, sched = r["latency_ms"], r["latency_from_scheduled_ms"]
        rows.append(
            (
                r["label"],
                f"{r['offered_deliveries_per_s']:,.0f}",
                f"{r['deliveries_per_s']:,.0f}",
                fmt(lat["p50"], 1),
                fmt(lat["p95"], 1),
                fmt(lat["p99"], 1),
                fmt(lat["max"], 1),
                fmt(sched["p99"], 1),
                str(r["lost_pairs"]),
                f"{r['rooms_converged']}/{r['rooms']}" if r.get("target") != "relay" else "-",
                fmt(None if r["server_cpu_util"] is None else r["server_cpu_util"] * 100, 0),
                fmt(r["server_cpu_ms_per_1000_deliveries"], 1),
                fmt(r["client_cpu_util"] * 100, 0),
                fmt(r["other_cpu_util"] * 100, 0),
                fmt(r["edits_per_received_update"], 2),
                fmt(r["server_rss_mb"], 1),
                "yes" if r["pass_p99"] and r["nothing_lost"] and r["converged"] else "NO",
            )
        )
    print(
        "latencies in ms from the actual send (p99 sched: from the scheduled instant); CPU% of one core "
        "(other: processes outside the benchmark); ms/1k deliv = server CPU ms per 1,000 deliveries"
    )
    print_rows(rows)


def print_report(presets: dict[str, Any]) -> None:
    for name, data in presets.items():
        print(f"\n== {name} ({data.get('backend')}, {data.get('started_at')}) ==")
        if "runs" in data:
            print_edit_table(data["runs"])
        elif name == "idle":
            r = data["result"]
            rows: list[tuple[str, ...]] = [("metric", "value")]
            for key in (
                "connected", "connect_failures", "connect_to_synced_ms", "connect_rate_per_s",
                "server_cpu_ms_per_connect",
                "server_rss_mb_before", "server_rss_mb_one_socket_per_room", "server_rss_mb_all_sockets",
                "server_rss_mb_after_hold", "rss_kb_per_socket_incl_rooms", "rss_kb_per_extra_socket",
                "rss_kb_per_loaded_room_with_one_socket", "server_cpu_util_while_idle", "alive_after_hold",
                "pings_answered", "client_rss_mb",
            ):  # fmt: skip
                value = r[key]
                if isinstance(value, dict):
                    value = (
                        f"p50 {fmt(value['p50'], 1)} p99 {fmt(value['p99'], 1)} max {fmt(value['max'], 1)}"
                    )
                rows.append((key, str(value)))
            print_rows(rows)
        elif name == "open":
            r = data["result"]
            rows = [("open", "total ms", "websocket", "ns connect", "sync", "log rows", "content ok")]
            entries = [
                (f"cold, from log #{n + 1}", t) for n, t in enumerate(r["cold_open_from_log"]["trials"])
            ]
            entries += [
                (f"warm, room loaded #{n + 1}", t) for n, t in enumerate(r["warm_open_room_loaded"]["trials"])
            ]
            entries += [
                (f"cold, from snapshot #{n + 1}", t)
                for n, t in enumerate(r["cold_open_from_snapshot"]["trials"])
            ]
            for label, t in entries:
                rows.append(
                    (
                        label,
                        fmt(t["total_ms"], 1),
                        fmt(t["websocket_ms"], 1),
                        fmt(t["namespace_connect_ms"], 1),
                        fmt(t["sync_ms"], 1),
                        str(t.get("log_rows", "-")),
                        str(t.get("content_ok", "-")),
                    )
                )
            print(f"{r['updates_written']:,} updates written in {r['write_s']} s; log rows at kill "
                  f"{r['log_rows_at_kill']}, after the snapshot {r['log_rows_after_snapshot']}")  # fmt: skip
            print_rows(rows)
        verdict = data.get("verdict") or {}
        if verdict:
            state = "PASS" if verdict.get("pass") else "FAIL"
            details = ", ".join(f"{k} {v}" for k, v in verdict.items() if k not in {"pass", "target"})
            print(f"target: {verdict.get('target', '-')}: {state}" + (f" ({details})" if details else ""))


# --- entry point -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.realtime", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--preset",
        choices=("all", *ALL_PRESETS, "custom"),
        default=None,
        help="all (default), throughput, latency, idle, open, or custom (--rooms/--editors/--rate)",
    )
    parser.add_argument("--rooms", type=int, help="rooms (overrides the preset)")
    parser.add_argument("--editors", type=int, help="editors per room (overrides the preset)")
    parser.add_argument(
        "--rate", help="edits/s per editor, or a comma-separated sweep (overrides the preset)"
    )
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each run")
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--client-procs", type=int, default=1, help="load-client processes (rooms never split)"
    )
    parser.add_argument(
        "--no-apply",
        dest="apply",
        action="store_false",
        help="editors do not apply received updates (convergence then only checks the server)",
    )
    parser.add_argument(
        "--idle-hold", type=float, default=30.0, help="idle preset: seconds to hold the sockets"
    )
    parser.add_argument("--updates", type=int, default=None, help="open preset: log entries (default 10000)")
    parser.add_argument(
        "--max-messages-per-second", type=int, default=1000, help="server RT_MAX_MESSAGES_PER_SECOND"
    )
    parser.add_argument(
        "--connect-concurrency", type=int, default=50, help="sockets connecting at once per client"
    )
    parser.add_argument("--py-spy", metavar="DIR", help="record the server with py-spy (raw format) per run")
    parser.add_argument(
        "--out", default="bench/results/realtime.json", help="JSON results (merged per preset)"
    )
    parser.add_argument(
        "--target",
        choices=("server", "relay"),
        default="server",
        help="relay: a bare relay without auth/CRDT/storage (the load client's ceiling)",
    )
    parser.add_argument(
        "--summarize-profile", metavar="RAW", help="print the summary of a py-spy raw file, exit"
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra server environment (repeatable), e.g. SNAPSHOT_INTERVAL_SECONDS=60",
    )
    parser.add_argument("--server-log", metavar="DIR", help="keep a copy of each server's log in DIR")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--relay-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.preset is None:
        args.preset = "custom" if (args.rooms or args.editors or args.rate) else "all"
    if args.rate:
        try:
            args.rates = [float(x) for x in args.rate.split(",") if x.strip()]
        except ValueError:
            parser.error("--rate takes numbers")
        if not args.rates or any(r <= 0 for r in args.rates):
            parser.error("--rate must be positive")
    else:
        args.rates = None
    if args.duration <= 0 or args.warmup < 0 or args.client_procs < 1:
        parser.error("--duration must be positive, --warmup >= 0, --client-procs >= 1")
    if args.editors is not None and not 2 <= args.editors <= 60:
        parser.error("--editors must be 2..60")
    args.postgres_url = os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    try:
        args.server_env = dict(item.split("=", 1) for item in args.server_env)
    except ValueError:
        parser.error("--server-env takes KEY=VALUE")
    return args


def load_report(out: Path) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(out.read_text())
        if isinstance(data, dict) and isinstance(data.get("presets"), dict):
            return data
    return {"benchmark": "realtime", "presets": {}}


async def amain(args: argparse.Namespace) -> int:
    names = list(ALL_PRESETS) if args.preset == "all" else [args.preset]
    out = Path(args.out)
    report = load_report(out)
    exit_code = 0
    for name in names:
        started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        meta = {
            "started_at": started,
            "backend": args.backend,
            "git_commit": git_commit(),
            "git_dirty": git_dirty(),
            "machine": machine_info(),
            "config": {
                "duration_s": args.duration,
                "warmup_s": args.warmup,
                "grace_s": GRACE_S,
                "client_procs": args.client_procs,
                "apply_on_receive": args.apply,
                "rt_max_messages_per_second": args.max_messages_per_second,
                "latency": "per (edit, receiver) from the moment the edit was written to the socket; "
                "latency_from_scheduled_ms from its open-loop scheduled instant",
            },
        }
        if args.target == "relay" and name == "open":
            print("[open] skipped: the relay has no documents", flush=True)
            continue
        print(f"[{name}] ...", flush=True)
        try:
            preset = PRESETS.get(name, {})
            if name in ("throughput", "latency", "custom"):
                rooms = args.rooms or preset.get("rooms", 10)
                editors = args.editors or preset.get("editors", 5)
                rates = args.rates or preset.get("rates", [20.0])
                data = await preset_edit(args, name, rooms, editors, rates)
            elif name == "idle":
                data = await preset_idle(
                    args, args.rooms or preset["rooms"], args.editors or preset["editors"]
                )
            else:
                data = await preset_open(args, args.updates or preset["updates"])
        except (ServerError, OSError, asyncpg.PostgresError, aiohttp.ClientError, TimeoutError) as exc:
            print(f"[{name}] FAILED: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            data = {"failure": f"{type(exc).__name__}: {exc}", "verdict": {"pass": False}}
            exit_code = 1
        key = name if args.backend == "sqlite" else f"{name}-{args.backend}"
        if args.target == "relay":
            key = f"{name}-relay"
        report["presets"][key] = {**meta, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **data}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")  # noqa: ASYNC240
    print_report({k: report["presets"][k] for k in report["presets"] if k.split("-")[0] in names})
    print(f"\nresults written to {out}")
    return exit_code


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.summarize_profile:
        print(summarize_py_spy(Path(args.summarize_profile)))
        return 0
    if args.relay_server:
        asyncio.run(relay_main(args.relay_server))
        return 0
    if args.worker:
        asyncio.run(worker_main())
        return 0
    raise_nofile_limit()
    try:
        return asyncio.run(amain(args))
    except KeyboardInterrupt:
        print("interrupted; server and load clients stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
