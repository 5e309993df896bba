"""Real-time benchmark with the stock npm clients, against our server and two peers, in one run.

    uv run python -m bench.stock                    # every scenario, every target (~25-30 min)
    uv run python -m bench.stock --quick            # the same, short windows (~10-12 min)
    uv run python -m bench.stock --baseline main    # + our server at main, paired per round

Targets: ``ours-sqlite``, ``ours-postgres`` (``musicplayground serve``: auth, roles, durable
log, snapshots), ``ysocketio`` (the y-socket.io server from npm) and ``hocuspocus``
(``@hocuspocus/server``); ``ours-sqlite-yws`` (ours on SQLite, its editors on the stock
``y-websocket`` client) and its peer ``ywebsocket`` (``@y/websocket-server`` from npm);
with ``--baseline REF`` also ``ours-sqlite@base`` and
``ours-postgres@base``: the server of commit REF from its own checkout and locked
environment (``bench/baseline.py``). The load comes from ``bench/js/load-worker.mjs`` (real
``yjs`` + the stock provider). Scenarios (``WORKLOADS``; each on a fresh server process;
targets interleaved per scenario so the machine's noise hits them alike):

* ``join``: 200 clients joining 20 rooms at once: connect p50/p95 (provider created -> synced).
* ``idle``: 1 room x 2 editors x 1 edit/s: p50 of an edit on an idle server; on Postgres also
  the floor: a bare asyncpg client's one-row committed INSERT after a short idle, p50/p99.
* ``s2``: 20 rooms x 10 editors x 5 edits/s.
* ``m10``, ``m20``: 10 rooms x 5 editors x 10 and 20 edits/s (2,000 and 4,000 deliveries/s).
* ``max``: 10 rooms x 5 editors, the rate raised step by step until p99 > 100 ms, a delivery
  is lost or a room diverges; the result is the best passing deliveries/s (and, for busy
  machines, the best lossless, converged deliveries/s whatever the p99).
* ``s3``: 1,000 sockets (250 rooms x 4), connected 100 at a time and held: server RSS per
  connection; then 0.2 edits/s per socket: server CPU, p50/p99.

Latency: sender's transaction -> receiver's Y.Map observer, both in one Node process. Server
CPU (``/proc/<pid>/stat``) over the measured window, per 1,000 deliveries. Every figure is
also given as a ratio to each peer (``bench/stock_report.py``). Results:
``bench/results/stock-<UTC time>.json`` and ``stock-latest.json``, ``--markdown`` a page to
commit (see bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bench.baseline import BASE_SUFFIX, Baseline, BaselineError, prepare, remove
from bench.common import (
    DEFAULT_POSTGRES_URL,
    REPO,
    Server,
    ServerError,
    ThrowawayDatabase,
    anonymous_token,
    cpu_spent,
    create_loop,
    fmt,
    free_port,
    git_commit,
    git_dirty,
    latency_summary,
    loop_payload,
    machine_cpu,
    machine_info,
    print_rows,
    proc_cpu_seconds,
    proc_status_kb,
    raise_nofile_limit,
)
from bench.realtime.runs import start_py_spy, stop_py_spy
from bench.stock_report import (
    PEERS,
    comparison_lines,
    difference_table,
    figure_table,
    figures,
    is_base,
    is_ours,
    markdown,
    median_figures,
)
from music.kinds import DocKind
from music.schema import LOOP_FIELDS
from music.writing import content_to_update

WORKER = REPO / "bench" / "js" / "load-worker.mjs"
PEER = REPO / "bench" / "js" / "peer-server.mjs"
RESULTS = REPO / "bench" / "results"
TARGETS = ("ours-sqlite", "ours-postgres", "ours-sqlite-yws", "ysocketio", "hocuspocus", "ywebsocket")
# A target whose editors use the stock y-websocket client (WebsocketProvider) instead of
# y-socket.io's: ours on SQLite over its y-websocket wire, and the npm y-websocket server.
YWS_SUFFIX = "-yws"
P99_LIMIT_MS = 100.0
FLOOR_IDLE_S = 0.5  # the idle scenario's server commits about every 0.5 s (2 editors x 1/s)


# --- the server under test ------------------------------------------------------------------


class PeerServer:
    """A Node peer (``bench/js/peer-server.mjs``) on a free port."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        scheme = "ws" if self.kind in ("hocuspocus", "ywebsocket") else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, documents: dict[str, str]) -> None:
        """Start it; ``documents`` (room name -> base64 Yjs update) is what each room loads."""
        self.proc = await asyncio.create_subprocess_exec(
            _node(), str(PEER), self.kind, str(self.port),
            cwd=REPO, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps(documents) + "\n").encode())
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        if b"listening" not in line:
            raise ServerError(f"{self.kind} did not start: {line!r}")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 10)
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()


@dataclass
class Target:
    """One running server plus the rooms (name, auth) the load workers use."""

    name: str
    url: str
    pid: int
    stop: Any
    rooms: list[dict[str, Any]] = field(default_factory=list)
    database: ThrowawayDatabase | None = None  # ours-postgres: its database, for the backends' CPU


def backend_of(name: str) -> str | None:
    """``sqlite`` or ``postgres`` for our targets (current or baseline), None for a peer."""
    if not is_ours(name):
        return None
    return name.removeprefix("ours-").removesuffix(BASE_SUFFIX).removesuffix(YWS_SUFFIX)


def client_of(name: str) -> str:
    """The stock client a target's editors use: ``yws`` (y-websocket), ``hocuspocus``, or
    ``ours`` / ``ysocketio`` (y-socket.io)."""
    if name == "ywebsocket" or name.removesuffix(BASE_SUFFIX).endswith(YWS_SUFFIX):
        return "yws"
    return name.split("-")[0]


def room_document(i: int, rng: random.Random) -> bytes:
    """Room ``i``'s document as a Yjs update: the loop ``create_loop(i, rng)`` makes on our
    server, encoded as our server encodes it. The peers load the same documents (their rooms
    would otherwise start empty and every join would sync less)."""
    payload = loop_payload(i, rng)
    content = {key: value for key, value in payload.items() if key in LOOP_FIELDS}
    return content_to_update(DocKind.LOOP, content)


async def start_target(
    name: str,
    rooms: int,
    pg: ThrowawayDatabase | None,
    baseline: Baseline | None = None,
    server_env: dict[str, str] | None = None,
) -> Target:
    """Start target ``name`` with ``rooms`` rooms; ``pg`` its database (ours on Postgres),
    ``baseline`` the checkout whose server an ``@base`` target runs, ``server_env`` more
    settings for ours (``bench.soak``: rooms that unload soon)."""
    rng = random.Random(7)  # the same documents on every target
    if name in PEERS:
        names = [f"room-{i}-{random.randrange(10**9)}" for i in range(rooms)]
        documents = {room: base64.b64encode(room_document(i, rng)).decode() for i, room in enumerate(names)}
        peer = PeerServer(name)
        await peer.start(documents)
        return Target(name, peer.url, peer.pid, peer.stop, [{"name": room} for room in names])
    backend = backend_of(name)
    assert backend is not None
    if is_base(name) and baseline is None:
        raise ServerError(f"{name} needs --baseline")
    server = Server(
        backend,
        pg.url if pg is not None else None,
        checkout=baseline.root if is_base(name) and baseline is not None else None,
        extra_env={
            "RT_MAX_MESSAGES_PER_SECOND": "1000",
            "RT_MAX_CLIENTS_PER_ROOM": "64",
            "RT_MAX_CONNECTIONS_PER_USER": "10000",  # every editor of a room uses the owner token
            **(server_env or {}),
        },
    )
    await server.start()
    specs = []
    async with aiohttp.ClientSession() as session:
        for i in range(rooms):  # one owner per room: every connect authenticates for real
            token = await anonymous_token(session, server.base_url)
            loop_id = await create_loop(session, server.base_url, token, i, rng)
            specs.append({"name": f"loop:{loop_id}", "auth": {"token": token}})
    return Target(name, server.base_url, server.pid, server.stop, specs, database=pg)


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise SystemExit("node is not installed (the stock clients run in Node; see bench/README.md)")
    return node


# --- load workers -----------------------------------------------------------------------------


class Worker:
    """One ``load-worker.mjs`` process driving the editors of some rooms."""

    def __init__(self, target: Target, rooms: list[dict[str, Any]], editors: int) -> None:
        kind = client_of(target.name)
        url = target.url
        if kind == "yws" and is_ours(target.name):  # our y-websocket endpoints: /ws/loop:<id>
            url = url.replace("http", "ws", 1) + "/ws"
        self.config: dict[str, Any] = {"target": kind, "url": url, "editors": editors, "rooms": rooms}
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            _node(), str(WORKER), cwd=REPO, limit=64 * 1024 * 1024,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        await self._send(self.config)

    async def _send(self, obj: dict[str, Any]) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())
        await self.proc.stdin.drain()

    async def call(self, obj: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
        await self._send(obj)
        assert self.proc is not None and self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"load worker exited ({self.proc.returncode}) during {obj['cmd']}")
        reply: dict[str, Any] = json.loads(line)
        if reply.get("event") == "fatal":
            raise RuntimeError(f"load worker failed: {reply.get('message')}")
        return reply

    def cpu_seconds(self) -> float:
        return (proc_cpu_seconds(self.proc.pid) or 0.0) if self.proc is not None else 0.0

    async def close(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(Exception):
            await self.call({"cmd": "close"}, timeout=20)
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()


class Load:
    """All workers of one scenario: rooms split between ``procs`` workers (never one room in two)."""

    def __init__(self, target: Target, rooms: int, editors: int, procs: int) -> None:
        procs = max(1, min(procs, rooms))
        self.workers = [Worker(target, target.rooms[i:rooms:procs], editors) for i in range(procs)]

    async def __aenter__(self) -> Load:
        await asyncio.gather(*(w.start() for w in self.workers))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(w.close() for w in self.workers))

    async def all(self, command: dict[str, Any]) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(w.call(command) for w in self.workers)))

    def cpu_seconds(self) -> float:
        return sum(w.cpu_seconds() for w in self.workers)


async def connect(load: Load, *, one_worker_at_a_time: bool = False) -> dict[str, Any]:
    command = {"cmd": "connect", "timeout": 60}
    if one_worker_at_a_time:  # S3: 1,000 sockets in batches, not one storm
        replies = [await w.call(command) for w in load.workers]
    else:
        replies = await load.all(command)
    times = [t for r in replies for t in r["connect_ms"]]
    summary = latency_summary(t / 1000 for t in times)
    return {"connect_ms": summary, "connect_failed": sum(r["failed"] for r in replies)}


# Our server's own histogram of update-log commits (write + COMMIT of one batch): tells a
# slow disk (Postgres waits for the WAL's fsync at every commit) from a slow server.
COMMIT_HISTOGRAM = "musicplayground_update_log_commit_seconds"


async def commit_buckets(target: Target) -> dict[float, float] | None:
    """The cumulative bucket counts of our server's commit histogram, by upper bound in
    seconds; None for the peers (they persist nothing), and for a baseline without it."""
    if not is_ours(target.name):
        return None
    async with aiohttp.ClientSession() as session, session.get(f"{target.url}/metrics") as resp:
        text = await resp.text()
    for family in text_string_to_metric_families(text):
        if family.name == COMMIT_HISTOGRAM:
            return {float(s.labels["le"]): s.value for s in family.samples if s.name.endswith("_bucket")}
    if is_base(target.name):  # an older commit may predate it
        return None
    raise RuntimeError(f"{target.name}: /metrics has no {COMMIT_HISTOGRAM}")


def commit_summary(before: dict[float, float], after: dict[float, float]) -> dict[str, Any]:
    """The window's commits: how many, how many took over 25 and 100 ms, and the bucket
    bound under which 99 % of them finished."""
    window = {bound: after[bound] - before.get(bound, 0.0) for bound in sorted(after)}
    total = window[float("inf")]
    p99_bound = next((bound for bound, count in window.items() if count >= 0.99 * total), None)
    return {
        "commits": int(total),
        "over_25_ms": int(total - window.get(0.025, total)),
        "over_100_ms": int(total - window.get(0.1, total)),
        "p99_ms_at_most": None if p99_bound is None or not total else p99_bound * 1000,
    }


async def edit_run(
    target: Target,
    load: Load,
    rate: float,
    warmup: float,
    duration: float,
    py_spy: str | None = None,
    scenario_name: str = "",
) -> dict[str, Any]:
    """One measured window of edits at ``rate`` per editor; then a convergence check.
    ``py_spy``: a directory for a py-spy profile of our server over the window."""
    grace = 3.0
    loadavg = os.getloadavg()[0]
    running = asyncio.ensure_future(
        load.all({"cmd": "load", "rate": rate, "warmup": warmup, "duration": duration, "grace": grace})
    )
    await asyncio.sleep(0.2 + warmup)  # the workers start 200 ms after the command
    label = f"{target.name}-{scenario_name}-{rate:g}"
    profiler = await start_py_spy(py_spy, label, target.pid, duration) if py_spy else None
    commits0 = await commit_buckets(target)  # outside the CPU window
    db0 = await target.database.backends_cpu() if target.database else {}
    cpu0, client0, machine0 = proc_cpu_seconds(target.pid) or 0.0, load.cpu_seconds(), machine_cpu()
    await asyncio.sleep(duration)
    cpu1, client1, machine1 = proc_cpu_seconds(target.pid) or 0.0, load.cpu_seconds(), machine_cpu()
    db1 = await target.database.backends_cpu() if target.database else {}
    commits1 = await commit_buckets(target)
    await stop_py_spy(profiler, py_spy, label, wait=True)
    replies = await running
    checked = await load.all({"cmd": "check"})
    latencies = [v for r in replies for v in r["latencies_ms"]]
    delivered = sum(r["delivered_pairs"] for r in replies)
    expected = sum(r["expected_pairs"] for r in replies)
    server_cpu = cpu1 - cpu0
    # Our server's Postgres backends (the commits' WAL flushes are theirs too); SQLite runs
    # inside the server.
    db_cpu = cpu_spent(db0, db1)
    busy = (machine1[0] - machine0[0]) / max(1e-9, machine1[1] - machine0[1])
    rooms = sum(c["rooms"] for c in checked)
    converged = sum(c["converged"] for c in checked)
    return {
        "rate": rate,
        "deliveries_per_s": round(delivered / duration, 1),
        "latency_ms": latency_summary(v / 1000 for v in latencies),
        "send_lag_ms": latency_summary(v / 1000 for r in replies for v in r["send_lag_ms"]),
        "expected_pairs": expected,
        "delivered_pairs": delivered,
        "delivered_pct": round(100 * delivered / expected, 3) if expected else None,
        "lost_pairs": expected - delivered,
        "duplicates": sum(r["duplicates"] for r in replies),
        "echoes": sum(r["echoes"] for r in replies),
        "rooms": rooms,
        "rooms_converged": converged,
        "convergence_problems": [p for c in checked for p in c["problems"]][:10],
        "server_cpu_util": round(server_cpu / duration, 3),
        "server_cpu_ms_per_1000_deliveries": round(1e6 * server_cpu / delivered, 2) if delivered else None,
        "database_cpu_ms_per_1000_deliveries": (
            round(1e6 * db_cpu / delivered, 2) if delivered and target.database else None
        ),
        "client_cpu_util": round((client1 - client0) / duration, 3),
        "machine_cpu_busy_pct": round(100 * busy, 1),
        "loadavg_1m_at_start": round(loadavg, 2),
        "server_rss_mb": round((proc_status_kb(target.pid, "VmRSS") or 0) / 1024, 1),
        "update_log_commits": commit_summary(commits0, commits1) if commits0 and commits1 else None,
    }


def passed(run: dict[str, Any]) -> bool:
    p99 = run["latency_ms"]["p99"]
    return (
        p99 is not None
        and p99 <= P99_LIMIT_MS
        and run["lost_pairs"] == 0
        and run["rooms_converged"] == run["rooms"]
    )


# --- scenarios ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """One scenario's load: ``rooms`` x ``editors`` connected, then what is measured:
    one edit window at ``rate`` edits/s per editor, or MAX's ``sweep`` of rates (neither:
    the connects only)."""

    rooms: int
    editors: int
    rate: float | None = None
    sweep: bool = False
    workers: int | None = None  # Node load workers; None: --client-procs
    staggered: bool = False  # connect one worker at a time, hold, then read RSS per connection
    min_duration: float = 0.0

    @property
    def sockets(self) -> int:
        return self.rooms * self.editors

    def offered_deliveries_per_s(self, rate: float) -> float:
        """Every edit reaches the room's other editors."""
        return self.rooms * self.editors * (self.editors - 1) * rate


WORKLOADS: dict[str, Workload] = {
    "join": Workload(20, 10, workers=1),
    "idle": Workload(1, 2, rate=1.0, workers=1, min_duration=10.0),
    "s2": Workload(20, 10, rate=5.0),
    "m10": Workload(10, 5, rate=10.0),  # issue 31: 2,000 deliveries/s
    "m20": Workload(10, 5, rate=20.0),  # 4,000 deliveries/s
    "max": Workload(10, 5, sweep=True),
    # Issue 31's S3: 1,000 sockets, 250 rooms x 4, 0.2 edits/s each; 10 workers of 100 sockets,
    # connected one worker at a time (not one storm).
    "s3": Workload(250, 4, rate=0.2, workers=10, staggered=True),
    # Issue 31's scale: 10,000 sockets on one instance (2,500 rooms x 4, 0.05 edits/s each),
    # from 20 workers of 500, connected one worker at a time. Not in the default run (setting
    # up 2,500 rooms takes minutes); --scenarios scale, or --scale-rooms for a smaller run.
    "scale": Workload(2500, 4, rate=0.05, workers=20, staggered=True, min_duration=30.0),
}
SCENARIOS = tuple(name for name in WORKLOADS if name != "scale")  # the default run


@dataclass
class Plan:
    warmup: float
    duration: float
    max_rates: list[float]
    s3_hold: float
    procs: int
    py_spy: str | None = None
    scale_rooms: int | None = None
    server_env: dict[str, str] = field(default_factory=dict)  # more settings for our servers


async def scenario(
    name: str, target_name: str, plan: Plan, pg: ThrowawayDatabase | None, baseline: Baseline | None = None
) -> dict[str, Any]:
    work = WORKLOADS[name]
    if name == "scale" and plan.scale_rooms is not None:
        work = replace(work, rooms=plan.scale_rooms, workers=min(work.workers or 1, plan.scale_rooms))
    target = await start_target(target_name, work.rooms, pg, baseline, plan.server_env)
    try:
        rss_before = proc_status_kb(target.pid, "VmRSS") or 0
        spy = plan.py_spy if is_ours(target_name) else None
        async with Load(target, work.rooms, work.editors, work.workers or plan.procs) as load:
            profile = spy if name == "join" else None  # the join storm itself
            profiler = await start_py_spy(profile, f"{target_name}-join", target.pid, 30) if profile else None
            joined = await connect(load, one_worker_at_a_time=work.staggered)
            await stop_py_spy(profiler, profile, f"{target_name}-join", wait=False)
            result: dict[str, Any] = {
                "backend": backend_of(target_name),
                "rooms": work.rooms,
                "editors": work.editors,
                **joined,
            }
            if joined["connect_failed"]:
                result["error"] = f"{joined['connect_failed']} clients did not connect"
                return result
            if work.staggered:  # RSS per connection, idle, before any edit
                await asyncio.sleep(plan.s3_hold)
                rss_after = proc_status_kb(target.pid, "VmRSS") or 0
                result.update(
                    sockets=work.sockets,
                    rss_before_mb=round(rss_before / 1024, 1),
                    rss_after_mb=round(rss_after / 1024, 1),
                    rss_per_connection_kb=round((rss_after - rss_before) / work.sockets, 1),
                )
            if work.rate is not None:
                duration = max(plan.duration, work.min_duration)
                result["offered_deliveries_per_s"] = work.offered_deliveries_per_s(work.rate)
                result.update(await edit_run(target, load, work.rate, plan.warmup, duration, spy, name))
                if name == "idle" and target.database is not None:
                    # The same run's floor under a durable edit, on the same database, the
                    # server idle: as many inserts as the window had edits, as far apart.
                    samples = max(10, round(duration / FLOOR_IDLE_S))
                    result["postgres_floor_ms"] = await target.database.commit_floor(samples, FLOOR_IDLE_S)
            if work.sweep:
                result.update(await max_sweep(target, load, plan, spy))
            return result
    finally:
        await target.stop()


async def max_sweep(target: Target, load: Load, plan: Plan, spy: str | None) -> dict[str, Any]:
    """MAX: the rate raised step by step on the same connections until one fails."""
    steps = []
    for rate in plan.max_rates:
        run = await edit_run(target, load, rate, plan.warmup, plan.duration, spy, "max")
        steps.append(run)
        _print_step(target.name, run)
        if not passed(run):
            break
    good = [s for s in steps if passed(s)]
    best = max(good, key=lambda s: s["deliveries_per_s"]) if good else None
    result: dict[str, Any] = {
        "steps": steps,
        "max_deliveries_per_s": best["deliveries_per_s"] if best else 0.0,
    }
    # On a busy machine p99 may miss 100 ms at every rate: also the best rate that lost
    # nothing and converged, whatever its p99.
    clean = [s for s in steps if s["lost_pairs"] == 0 and s["rooms_converged"] == s["rooms"]]
    if clean:
        top = max(clean, key=lambda s: s["deliveries_per_s"])
        result["max_lossless_deliveries_per_s"] = top["deliveries_per_s"]
        result["max_lossless_p99_ms"] = top["latency_ms"]["p99"]
    if best is not None:
        result["server_cpu_ms_per_1000_deliveries"] = best["server_cpu_ms_per_1000_deliveries"]
    return result


def _print_step(target: str, run: dict[str, Any]) -> None:
    lat, commits = run["latency_ms"], run.get("update_log_commits")
    print(
        f"    {target:14} F={run['rate']:<5g} {run['deliveries_per_s']:>8.0f}/s p50 {fmt(lat['p50'])} "
        f"p99 {fmt(lat['p99'])} lost {run['lost_pairs']} converged {run['rooms_converged']}/{run['rooms']} "
        f"cpu/1k {fmt(run['server_cpu_ms_per_1000_deliveries'])} ms  load {run['loadavg_1m_at_start']}"
        + (f"  commits >100 ms {commits['over_100_ms']}/{commits['commits']}" if commits else ""),
        flush=True,
    )


# --- report ------------------------------------------------------------------------------------


def print_report(report: dict[str, Any]) -> None:
    """The tables of ``bench.stock_report`` on stdout."""
    rows, targets = report["figures"], report["targets"]
    print_rows(figure_table(rows, targets))
    differences = difference_table(rows, targets)
    if len(differences) > 1 and len(differences[0]) > 1:
        print("\np50 differences (ms), ours minus the other, paired per round:")
        print_rows(differences)
    lines = comparison_lines(rows, targets)
    if lines:
        print()
        print("\n".join(lines))


def result_paths(args: argparse.Namespace, started: float) -> list[Path]:
    """``--out``, or by default a dated file and ``stock-latest.json`` beside it."""
    if args.out is not None:
        return [args.out]
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))
    return [RESULTS / f"stock-{stamp}.json", RESULTS / "stock-latest.json"]


# --- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.stock", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="short windows and fewer MAX steps (~10-12 min)")
    p.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated of {tuple(WORKLOADS)} (default: all but scale)",
    )
    p.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting for our servers (repeatable), e.g. SNAPSHOT_INTERVAL_SECONDS=60",
    )
    p.add_argument(
        "--scale-rooms",
        type=int,
        help="scale: rooms of 4 sockets (default 2,500: 10,000 sockets), for a machine that cannot hold it",
    )
    p.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated of {TARGETS}")
    p.add_argument("--duration", type=float, help="measured seconds per window (default 20, quick 6)")
    p.add_argument("--warmup", type=float, help="seconds before each window (default 3, quick 2)")
    p.add_argument("--max-rates", help="MAX: comma-separated edits/s per editor to try in order")
    p.add_argument("--client-procs", type=int, default=1, help="Node load workers for S2, M10, M20 and MAX")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every scenario this many times, the targets' order reversed every other round; "
        "figures are medians, ratios the median of each round's own",
    )
    p.add_argument(
        "--baseline",
        metavar="REF",
        help="also run our server at git REF (a branch, tag or commit) from its own checkout and "
        "locked environment under bench/.baseline/, as ours-<db>@base beside each ours-<db> target",
    )
    p.add_argument(
        "--drop-baseline", action="store_true", help="delete the baseline's checkout at the end (else reused)"
    )
    p.add_argument(
        "--py-spy", metavar="DIR", help="py-spy profiles of our server (idle, S2): uv run --with py-spy"
    )
    p.add_argument(
        "--out",
        type=Path,
        help="the JSON results file (default bench/results/stock-<UTC time>.json and stock-latest.json)",
    )
    p.add_argument("--markdown", type=Path, metavar="PATH", help="also write the run's tables as markdown")
    args = p.parse_args(argv)
    args.command = shlex.join(["python", "-m", "bench.stock", *(sys.argv[1:] if argv is None else argv)])
    return args


def make_plan(args: argparse.Namespace) -> Plan:
    # Up to well past where every target stops (MAX stops at the first failing rate).
    rates = ",".join(map(str, range(20, 400, 40) if args.quick else [10, 20, *range(40, 401, 40)]))
    return Plan(
        warmup=args.warmup if args.warmup is not None else (2.0 if args.quick else 3.0),
        duration=args.duration if args.duration is not None else (6.0 if args.quick else 20.0),
        max_rates=[float(r) for r in (args.max_rates or rates).split(",")],
        s3_hold=3.0 if args.quick else 10.0,
        procs=args.client_procs,
        py_spy=args.py_spy,
        scale_rooms=args.scale_rooms,
        server_env=dict(pair.split("=", 1) for pair in args.server_env),
    )


def with_baseline(targets: list[str]) -> list[str]:
    """``targets`` with ``ours-<db>@base`` right after each ``ours-<db>`` (adjacent windows)."""
    return [name for t in targets for name in ((t, t + BASE_SUFFIX) if is_ours(t) else (t,))]


async def amain(args: argparse.Namespace) -> int:
    raise_nofile_limit()
    plan = make_plan(args)
    scenarios = [s for s in args.scenarios.split(",") if s]
    targets = [t for t in args.targets.split(",") if t]
    unknown = (set(scenarios) - set(WORKLOADS)) | (set(targets) - set(TARGETS))
    if unknown:
        raise SystemExit(f"unknown scenario or target: {sorted(unknown)}")
    if args.rounds < 1:
        raise SystemExit("--rounds must be at least 1")
    baseline = None
    if args.baseline:
        if not any(is_ours(t) for t in targets):
            raise SystemExit("--baseline needs ours-sqlite or ours-postgres among --targets")
        try:
            baseline = await asyncio.to_thread(prepare, args.baseline)
        except BaselineError as exc:
            raise SystemExit(f"baseline: {exc}") from exc
        targets = with_baseline(targets)
    # One throwaway database per Postgres target: a baseline's migrations may differ.
    databases = {
        t: ThrowawayDatabase(os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL))
        for t in targets
        if backend_of(t) == "postgres"
    }
    rounds: list[dict[str, dict[str, Any]]] = [{t: {} for t in targets} for _ in range(args.rounds)]
    started = time.time()
    report: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "command": args.command,
        "git_commit": git_commit(),
        "git_dirty": git_dirty(),
        "baseline": baseline.describe() if baseline else None,
        "machine": machine_info(),
        "plan": plan.__dict__,
        "targets": targets,
        "rounds": [],
    }
    paths = result_paths(args, started)
    try:
        for database in databases.values():
            await database.create()
        for scen in scenarios:
            for number, results in enumerate(rounds):
                of = f" (round {number + 1} of {len(rounds)})" if len(rounds) > 1 else ""
                print(f"== {scen}{of}", flush=True)
                # Reversed every other round: a drift of the machine's speed over the round
                # then favours no target.
                for target in targets if number % 2 == 0 else targets[::-1]:
                    try:
                        result = await scenario(scen, target, plan, databases.get(target), baseline)
                    except (ServerError, RuntimeError, TimeoutError, OSError) as exc:
                        result = {"error": f"{type(exc).__name__}: {exc}"}
                    results[target][scen] = result
                    summary = {k: v for k, v in result.items() if k not in {"steps", "convergence_problems"}}
                    print(f"  {target}: {json.dumps(summary)[:400]}", flush=True)
    finally:
        for database in databases.values():
            await database.drop()
        if baseline is not None and args.drop_baseline:
            await asyncio.to_thread(remove, baseline)
        report["elapsed_s"] = round(time.time() - started, 1)
        report["loadavg_at_end"] = list(os.getloadavg())
        report["rounds"] = [{"results": results, "figures": figures(results)} for results in rounds]
        report["figures"] = median_figures([r["figures"] for r in report["rounds"]])
        text = json.dumps(report, indent=2) + "\n"
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        if args.markdown is not None:
            args.markdown.parent.mkdir(parents=True, exist_ok=True)
            args.markdown.write_text(markdown(report))
    print()
    print_report(report)
    loadavg = report["machine"]["loadavg_at_start"], report["loadavg_at_end"]
    print(f"\nload average at start {loadavg[0]}, at end {loadavg[1]}")
    print(
        f"results: {', '.join(map(str, paths))}" + (f"; markdown: {args.markdown}" if args.markdown else "")
    )
    return 1 if any("error" in r for results in rounds for by in results.values() for r in by.values()) else 0


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(amain(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
