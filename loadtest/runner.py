"""The load test itself: users and loops over REST, then simulated editors and viewers.

Every simulated socket is a :class:`loadtest.client.CollabClient` (the real protocol: the
y-socket.io events over Socket.IO, a pycrdt document and awareness). An editor edits at a
fixed rate, open loop (edit *n* is due at ``start + phase + n / rate`` whether or not the
earlier ones arrived), and moves its cursor with every edit. An edit sets the editor's next
sequencer cell (a ``steps`` entry of its own pitch; it cycles through step x row, 256 cells,
fewer when many editors share a loop) to a new ``Y.Map`` carrying a unique token in an extra
attribute ``lt``; every other synced socket of the room sees it in its ``steps`` observer,
which gives the latency (send -> observer, one clock: every socket lives in this process)
and the delivery count.

At the end the tool reads each loop back over REST and checks that every cell it wrote is
in the stored document.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
from pycrdt import Map, MapEvent

from loadtest.client import CollabClient
from loadtest.limits import (
    MAX_DURATION,
    MAX_EDITORS,
    MAX_RATE,
    MAX_ROOMS,
    MAX_SOCKETS,
    MAX_VIEWERS,
)
from loadtest.report import Second, summary_ms
from music.bounds import MAX_ROW, MAX_STEP, MAX_STEPS
from music.schema import step_key

MAX_TRACKED_LATENCIES = 5_000_000  # samples kept for the percentiles (8 bytes each)

SOUND = "loadtest"
FIRST_PITCH = 40  # editor i writes pitch 40 + i (<= 103 for 64 editors)
CELLS_PER_EDITOR = (MAX_STEP + 1) * (MAX_ROW + 1)  # step x row: 256


class LoadTestError(Exception):
    """The run could not start (server unreachable, REST refused the setup...)."""


@dataclass(frozen=True)
class LoadTestConfig:
    url: str
    rooms: int = 2
    editors: int = 3
    viewers: int = 0
    rate: float = 2.0
    duration: float = 30.0
    ramp: float = 0.0
    token_mode: str = "anonymous"
    tokens: tuple[str, ...] = field(default=(), repr=False)
    grace: float = 3.0
    connect_timeout: float = 15.0

    def check(self) -> None:
        """Raise ValueError for a run outside the tool's bounds."""
        problems = []
        if not 1 <= self.rooms <= MAX_ROOMS:
            problems.append(f"rooms must be 1..{MAX_ROOMS}")
        if not 1 <= self.editors <= MAX_EDITORS:
            problems.append(f"editors must be 1..{MAX_EDITORS}")
        if not 0 <= self.viewers <= MAX_VIEWERS:
            problems.append(f"viewers must be 0..{MAX_VIEWERS}")
        if self.rooms * (self.editors + self.viewers) > MAX_SOCKETS:
            problems.append(f"rooms x (editors + viewers) must be <= {MAX_SOCKETS} sockets")
        if not 0 < self.rate <= MAX_RATE:
            problems.append(f"rate must be in (0, {MAX_RATE}] edits/s per editor")
        if not 0 < self.duration <= MAX_DURATION:
            problems.append(f"duration must be in (0, {MAX_DURATION:g}] s")
        if not 0 <= self.ramp <= self.duration:
            problems.append("ramp must be between 0 and the duration")
        if self.token_mode not in ("anonymous", "file"):
            problems.append("token mode must be anonymous or file")
        if self.token_mode == "file" and not self.tokens:
            problems.append("token mode file needs at least one token")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass
class _Edit:
    sent_at: float
    expected: int  # bit mask of the receivers (sockets of the room synced at send time)
    seen: int = 0


@dataclass
class _Socket:
    room: int
    index: int  # within the room: editors first, then viewers
    editor: bool
    client: CollabClient
    connected: bool = False
    seq: int = 0
    subscription: Any = None


@dataclass
class _Room:
    loop_id: str
    token: str
    sockets: list[_Socket] = field(default_factory=list)
    cells: set[tuple[int, int, int]] = field(default_factory=set)  # (step, row, pitch) written


class LoadTest:
    """One run. ``await LoadTest(config).run(stop)`` returns the report (a JSON-able dict);
    setting ``stop`` ends the run early (Ctrl-C) with a partial report."""

    def __init__(self, config: LoadTestConfig, progress: Callable[[str], None] | None = None) -> None:
        config.check()
        self.config = config
        self.progress = progress
        self.rooms: list[_Room] = []
        self.edits: dict[str, _Edit] = {}
        self.latencies = array.array("d")
        self.seconds: list[Second] = []
        self.sent = 0
        self.delivered = 0
        self.expected = 0
        self.duplicates = 0
        self.connect_times: list[float] = []
        self.connect_failures: list[str] = []
        self.send_lag: list[float] = []
        self._start = 0.0
        self._errors_seen = 0
        self._disconnects_seen = 0
        # Each editor cycles through its own cells (its pitch); a room's cells stay within
        # what a loop holds (MAX_STEPS), so the REST check sees all of them.
        self._cells_per_editor = min(CELLS_PER_EDITOR, MAX_STEPS // config.editors)

    # --- setup over REST ------------------------------------------------------------------

    async def _setup(self, http: aiohttp.ClientSession) -> None:
        base = self.config.url.rstrip("/")
        for i in range(self.config.rooms):
            if self.config.token_mode == "file":
                token = self.config.tokens[i % len(self.config.tokens)]
            else:
                token = str((await self._post(http, f"{base}/api/auth/anonymous", None, None))["token"])
            loop = {"name": f"Load test {i + 1}", "length": 1, "bpm": 120, "isPublic": False}
            created = await self._post(http, f"{base}/api/loops", loop, token)
            self.rooms.append(_Room(loop_id=str(created["id"]), token=token))

    @staticmethod
    async def _post(http: aiohttp.ClientSession, url: str, body: Any, token: str | None) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            async with http.post(url, json=body, headers=headers) as resp:
                if resp.status != 201:
                    raise LoadTestError(f"POST {url} answered {resp.status}: {(await resp.text())[:300]}")
                data: dict[str, Any] = await resp.json()
                return data
        except aiohttp.ClientError as exc:
            raise LoadTestError(f"POST {url} failed: {exc}") from exc

    # --- sockets --------------------------------------------------------------------------

    def _make_sockets(self) -> list[_Socket]:
        everyone = []
        for r, room in enumerate(self.rooms):
            for i in range(self.config.editors + self.config.viewers):
                client = CollabClient(self.config.url, "loop", room.loop_id, token=room.token)
                socket = _Socket(room=r, index=i, editor=i < self.config.editors, client=client)
                socket.subscription = client.doc.get("steps", type=Map).observe(self._observer(socket))
                room.sockets.append(socket)
                everyone.append(socket)
        return everyone

    def _observer(self, socket: _Socket) -> Callable[[MapEvent], None]:
        # One parameter exactly: pycrdt passes as many arguments as the callback takes.
        return lambda event: self._on_steps(socket, event)

    def _on_steps(self, socket: _Socket, event: MapEvent) -> None:
        now = time.monotonic()
        for change in event.keys.values():  # type: ignore[attr-defined]  # pycrdt declares MapEvent.keys only in __slots__
            value = change.get("newValue")
            if not isinstance(value, Map):
                continue
            token = value.get("lt")
            if not isinstance(token, str):
                continue
            edit = self.edits.get(token)
            bit = 1 << socket.index
            if edit is None or not edit.expected & bit:
                continue  # our own edit, an old one (initial sync), or one we were not there for
            if edit.seen & bit:
                self.duplicates += 1
                continue
            edit.seen |= bit
            self.delivered += 1
            latency = now - edit.sent_at
            if len(self.latencies) < MAX_TRACKED_LATENCIES:
                self.latencies.append(latency)
            self._second(now).latencies.append(latency)
            if edit.seen == edit.expected:
                del self.edits[token]

    def _second(self, now: float) -> Second:
        index = max(0, int(now - self._start))
        while len(self.seconds) <= index:
            self.seconds.append(Second())
        return self.seconds[index]

    async def _connect(self, socket: _Socket, delay: float) -> None:
        await asyncio.sleep(delay)
        started = time.monotonic()
        try:
            await socket.client.connect(timeout=self.config.connect_timeout)
        except Exception as exc:  # refused, unreachable, timeout: counted, the run goes on
            self.connect_failures.append(f"{type(exc).__name__}: {exc}"[:300])
            self._second(time.monotonic()).errors += 1
            return
        self.connect_times.append(time.monotonic() - started)
        socket.connected = True

    def _edit(self, socket: _Socket, scheduled: float) -> None:
        room = self.rooms[socket.room]
        seq = socket.seq
        socket.seq += 1
        cell_index = seq % self._cells_per_editor
        step, row = cell_index % (MAX_STEP + 1), cell_index // (MAX_STEP + 1)
        pitch = FIRST_PITCH + socket.index
        token = f"{socket.room}:{socket.index}:{seq}"
        expected = 0
        for other in room.sockets:
            if other is not socket and other.connected and other.client.synced.is_set():
                expected |= 1 << other.index
        now = time.monotonic()
        self.edits[token] = _Edit(sent_at=now, expected=expected)
        self.expected += expected.bit_count()
        cell = {"step": step, "row": row, "soundId": SOUND, "pitch": pitch, "velocity": 0.8, "lt": token}
        socket.client.doc.get("steps", type=Map)[step_key(cell)] = Map(cell)
        name = f"load test {socket.room}.{socket.index}"
        socket.client.set_awareness({"user": {"name": name}, "cursor": {"step": step, "row": row}})
        room.cells.add((step, row, pitch))
        self.sent += 1
        self.send_lag.append(now - scheduled)
        self._second(now).edits += 1

    async def _edit_loop(self, socket: _Socket, end: float, stop: asyncio.Event) -> None:
        period = 1 / self.config.rate
        next_at = time.monotonic() + random.random() * period
        while next_at < end and not stop.is_set():
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            if stop.is_set():
                return
            if socket.client.connected and socket.client.synced.is_set():
                self._edit(socket, next_at)
            next_at += period

    async def _socket_life(self, socket: _Socket, delay: float, end: float, stop: asyncio.Event) -> None:
        await self._connect(socket, delay)
        if socket.connected and socket.editor:
            await self._edit_loop(socket, end, stop)

    # --- progress ---------------------------------------------------------------------------

    def _errors(self) -> tuple[int, int]:
        """(refused connects, server error events and protocol errors; lost connections) so far."""
        errors = len(self.connect_failures)
        disconnects = 0
        for room in self.rooms:
            for s in room.sockets:
                errors += len(s.client.errors) + len(s.client.protocol_errors)
                disconnects += int(s.connected and not s.client.connected)
        return errors, disconnects

    async def _report_progress(self, stop: asyncio.Event) -> None:
        sockets = sum(len(r.sockets) for r in self.rooms)
        while not stop.is_set():
            await asyncio.sleep(1)
            now = time.monotonic()
            errors, disconnects = self._errors()
            second = self._second(now)
            second.errors += errors - self._errors_seen
            second.disconnects += disconnects - self._disconnects_seen
            self._errors_seen, self._disconnects_seen = errors, disconnects
            if self.progress is None:
                continue
            last = self._second(now - 1)
            lat = summary_ms(last.latencies)
            connected = sum(s.connected and s.client.connected for r in self.rooms for s in r.sockets)
            self.progress(
                f"[{now - self._start:6.1f}/{self.config.duration:g} s] sockets {connected}/{sockets}  "
                f"edits {self.sent}  deliveries {lat['count']}/s  p50 {_ms(lat['p50'])}  "
                f"p99 {_ms(lat['p99'])}  errors {errors}  disconnects {disconnects}"
            )

    # --- the run ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> dict[str, Any]:
        stop = stop or asyncio.Event()
        started_at = time.time()
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            await self._setup(http)
            sockets = self._make_sockets()
            self._start = time.monotonic()
            end = self._start + self.config.duration
            ramp_step = self.config.ramp / len(sockets)
            progress = asyncio.create_task(self._report_progress(stop))
            lives = [
                asyncio.create_task(self._socket_life(s, i * ramp_step, end, stop))
                for i, s in enumerate(sockets)
            ]
            interrupted = False
            try:
                finished = asyncio.gather(*lives)
                stopped = asyncio.create_task(stop.wait())
                waited: list[asyncio.Future[Any]] = [finished, stopped]
                await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
                interrupted = stop.is_set()
                stop.set()  # ends the edit loops of an interrupted run
                await finished
                # Stragglers: wait for what is still in flight, at most the grace period.
                deadline = time.monotonic() + (0.5 if interrupted else self.config.grace)
                while self.edits and any(e.seen != e.expected for e in self.edits.values()):
                    if time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.05)
            finally:
                stop.set()
                progress.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await progress
                for task in lives:
                    task.cancel()
                elapsed = time.monotonic() - self._start
                errors = self._error_summary()
                closing = (s.client.close(flush_timeout=1) for s in sockets)
                await asyncio.gather(*closing, return_exceptions=True)
            documents = await self._verify_documents(http)
        return self._report(started_at, elapsed, interrupted, errors, documents)

    def _error_summary(self) -> dict[str, Any]:
        server_errors: dict[str, int] = {}
        protocol_errors = disconnects = 0
        for room in self.rooms:
            for s in room.sockets:
                for e in s.client.errors:
                    code = str(e.get("code"))
                    server_errors[code] = server_errors.get(code, 0) + 1
                protocol_errors += len(s.client.protocol_errors)
                disconnects += int(s.connected and not s.client.connected)
        return {
            "connect_failures": len(self.connect_failures),
            "connect_failure_examples": self.connect_failures[:5],
            "server_error_events": server_errors,
            "protocol_errors": protocol_errors,
            "lost_connections": disconnects,
        }

    async def _verify_documents(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        """Every cell the run wrote must be in the stored loop (GET /api/loops/:id)."""
        base = self.config.url.rstrip("/")
        checked = complete = 0
        missing = 0
        problems: list[str] = []
        for room in self.rooms:
            try:
                async with http.get(
                    f"{base}/api/loops/{room.loop_id}", headers={"Authorization": f"Bearer {room.token}"}
                ) as resp:
                    if resp.status != 200:
                        problems.append(f"GET loop {room.loop_id}: {resp.status}")
                        continue
                    content = await resp.json()
            except aiohttp.ClientError as exc:
                problems.append(f"GET loop {room.loop_id}: {exc}")
                continue
            checked += 1
            steps = [s for s in content["iconSequence"] if s["soundId"] == SOUND]
            stored = {(s["step"], s.get("row"), s.get("pitch")) for s in steps}
            absent = room.cells - stored
            missing += len(absent)
            complete += not absent
        return {"checked": checked, "complete": complete, "missing_cells": missing, "problems": problems[:10]}

    def _report(
        self,
        started_at: float,
        elapsed: float,
        interrupted: bool,
        errors: dict[str, Any],
        documents: dict[str, Any],
    ) -> dict[str, Any]:
        lost = self.expected - self.delivered
        config = asdict(self.config)
        config.pop("tokens")
        return {
            "tool": "musicplayground loadtest",
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started_at)),
            "url": self.config.url,
            "config": config,
            "interrupted": interrupted,
            "elapsed_s": round(elapsed, 2),
            "sockets": {
                "editors": self.config.rooms * self.config.editors,
                "viewers": self.config.rooms * self.config.viewers,
                "connected": len(self.connect_times),
                "connect_ms": summary_ms(self.connect_times),
            },
            "loops": [room.loop_id for room in self.rooms],
            "edits_sent": self.sent,
            "expected_deliveries": self.expected,
            "deliveries": self.delivered,
            "lost_deliveries": lost,
            "duplicates": self.duplicates,
            "delivered_pct": round(100 * self.delivered / self.expected, 3) if self.expected else None,
            "deliveries_per_s": round(self.delivered / elapsed, 1) if elapsed > 0 else None,
            "latency_ms": summary_ms(self.latencies),
            "send_lag_ms": summary_ms(self.send_lag),
            "errors": errors,
            "documents": documents,
            "timeline": [s.as_json(t) for t, s in enumerate(self.seconds)],
        }


def _ms(value: float | int | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"
