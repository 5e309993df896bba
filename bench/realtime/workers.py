"""Load-client processes (``--worker``), their driver, and the bare relay server (``--target relay``)."""

from __future__ import annotations

import array
import asyncio
import contextlib
import heapq
import json
import math
import random
import sys
import time
from typing import Any

import aiohttp

from bench.common import (
    REPO,
    Server,
    ServerError,
    proc_cpu_seconds,
    raise_nofile_limit,
)
from bench.realtime.wire import (
    BINARY,
    PLACEHOLDER,
    TEXT,
    TOKEN_FINDALL,
    Conn,
    b64_floats,
    decode_state_vector,
    perf_counter,
)


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
            "connect_ms": b64_floats(times),
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
            "lat_sent": b64_floats(self.lat_sent),
            "lat_sched": b64_floats(self.lat_sched),
            "lat_at": b64_floats(self.lat_at),
            "send_lag": b64_floats(self.send_lag),
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
