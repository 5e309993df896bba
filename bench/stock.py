"""Real-time benchmark with the stock npm clients, against our server and two peers, in one run.

    uv run python -m bench.stock            # every scenario, every target (~20-25 min)
    uv run python -m bench.stock --quick    # the same, short windows (~8-10 min)

Targets: ``ours-sqlite``, ``ours-postgres`` (``musicplayground serve``: auth, roles, durable
log, snapshots), ``ysocketio`` (the y-socket.io server from npm) and ``hocuspocus``
(``@hocuspocus/server``); the load comes from ``bench/js/load-worker.mjs`` (real ``yjs`` +
the stock provider). Scenarios (each on a fresh server process; targets interleaved per
scenario so the machine's noise hits them alike):

* ``join``: 200 clients joining 20 rooms at once: connect p50/p95 (provider created -> synced).
* ``idle``: 1 room x 2 editors x 1 edit/s: p50 of an edit on an idle server.
* ``s2``: 20 rooms x 10 editors x 5 edits/s.
* ``max``: 10 rooms x 5 editors, the rate raised step by step until p99 > 100 ms, a delivery
  is lost or a room diverges; the result is the best passing deliveries/s (and, for busy
  machines, the best lossless, converged deliveries/s whatever the p99).
* ``s3``: 1,000 mostly idle sockets (100 rooms x 10): server RSS per connection.

Latency: sender's transaction -> receiver's Y.Map observer, both in one Node process. Server
CPU (``/proc/<pid>/stat``) over the measured window, per 1,000 deliveries. Every figure is
also given as a ratio to each peer. Results: ``bench/results/stock.json`` (see bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

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
from realtime import docschema

WORKER = REPO / "bench" / "js" / "load-worker.mjs"
PEER = REPO / "bench" / "js" / "peer-server.mjs"
TARGETS = ("ours-sqlite", "ours-postgres", "ysocketio", "hocuspocus")
PEERS = ("ysocketio", "hocuspocus")
SCENARIOS = ("join", "idle", "s2", "max", "s3")
P99_LIMIT_MS = 100.0


# --- the server under test ------------------------------------------------------------------


class PeerServer:
    """A Node peer (``bench/js/peer-server.mjs``) on a free port."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        scheme = "ws" if self.kind == "hocuspocus" else "http"
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


def room_document(i: int, rng: random.Random) -> bytes:
    """Room ``i``'s document as a Yjs update: the loop ``create_loop(i, rng)`` makes on our
    server, encoded as our server encodes it. The peers load the same documents (their rooms
    would otherwise start empty and every join would sync less)."""
    payload = loop_payload(i, rng)
    content = {key: value for key, value in payload.items() if key in docschema.LOOP_FIELDS}
    return docschema.content_to_update(docschema.DocKind.LOOP, content)


async def start_target(name: str, rooms: int, pg: ThrowawayDatabase | None) -> Target:
    rng = random.Random(7)  # the same documents on every target
    if name in PEERS:
        names = [f"room-{i}-{random.randrange(10**9)}" for i in range(rooms)]
        documents = {room: base64.b64encode(room_document(i, rng)).decode() for i, room in enumerate(names)}
        peer = PeerServer(name)
        await peer.start(documents)
        return Target(name, peer.url, peer.pid, peer.stop, [{"name": room} for room in names])
    backend = name.removeprefix("ours-")
    server = Server(
        backend,
        pg.url if pg is not None else None,
        extra_env={
            "RT_MAX_MESSAGES_PER_SECOND": "1000",
            "RT_MAX_CLIENTS_PER_ROOM": "64",
            "RT_MAX_CONNECTIONS_PER_USER": "10000",  # every editor of a room uses the owner token
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
        kind = target.name.split("-")[0]  # ours | ysocketio | hocuspocus
        self.config = {"target": kind, "url": target.url, "editors": editors, "rooms": rooms}
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
    seconds; None for the peers (they persist nothing)."""
    if not target.name.startswith("ours"):
        return None
    async with aiohttp.ClientSession() as session, session.get(f"{target.url}/metrics") as resp:
        text = await resp.text()
    for family in text_string_to_metric_families(text):
        if family.name == COMMIT_HISTOGRAM:
            return {float(s.labels["le"]): s.value for s in family.samples if s.name.endswith("_bucket")}
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
    target: Target, load: Load, rate: float, warmup: float, duration: float, py_spy: str | None = None
) -> dict[str, Any]:
    """One measured window of edits at ``rate`` per editor; then a convergence check.
    ``py_spy``: a directory for a py-spy profile of our server over the window."""
    grace = 3.0
    loadavg = os.getloadavg()[0]
    running = asyncio.ensure_future(
        load.all({"cmd": "load", "rate": rate, "warmup": warmup, "duration": duration, "grace": grace})
    )
    await asyncio.sleep(0.2 + warmup)  # the workers start 200 ms after the command
    label = f"{target.name}-{rate:g}"
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


@dataclass
class Plan:
    warmup: float
    duration: float
    max_rates: list[float]
    s3_rooms: int
    s3_hold: float
    procs: int
    py_spy: str | None = None


async def scenario(name: str, target_name: str, plan: Plan, pg: ThrowawayDatabase | None) -> dict[str, Any]:
    rooms, editors = {"join": (20, 10), "idle": (1, 2), "s2": (20, 10), "max": (10, 5)}.get(
        name, (plan.s3_rooms, 10)
    )
    target = await start_target(target_name, rooms, pg)
    try:
        rss_before = proc_status_kb(target.pid, "VmRSS") or 0
        procs = {"s2": plan.procs, "max": plan.procs, "s3": rooms // 10}.get(name, 1)
        spy = plan.py_spy if target_name.startswith("ours") else None
        async with Load(target, rooms, editors, procs) as load:
            profile = spy if name == "join" else None  # the join storm itself
            profiler = await start_py_spy(profile, f"{target_name}-join", target.pid, 30) if profile else None
            joined = await connect(load, one_worker_at_a_time=name == "s3")
            await stop_py_spy(profiler, profile, f"{target_name}-join", wait=False)
            result: dict[str, Any] = {"rooms": rooms, "editors": editors, **joined}
            if joined["connect_failed"]:
                result["error"] = f"{joined['connect_failed']} clients did not connect"
                return result
            if name == "idle":
                result.update(await edit_run(target, load, 1.0, plan.warmup, max(plan.duration, 10), spy))
            elif name == "s2":
                result.update(await edit_run(target, load, 5.0, plan.warmup, plan.duration, spy))
            elif name == "max":
                steps = []
                for rate in plan.max_rates:
                    run = await edit_run(target, load, rate, plan.warmup, plan.duration, spy)
                    steps.append(run)
                    _print_step(target_name, run)
                    if not passed(run):
                        break
                good = [s for s in steps if passed(s)]
                best = max(good, key=lambda s: s["deliveries_per_s"]) if good else None
                result.update(steps=steps, max_deliveries_per_s=best["deliveries_per_s"] if best else 0.0)
                # On a busy machine p99 may miss 100 ms at every rate: also the best rate that
                # lost nothing and converged, whatever its p99.
                clean = [s for s in steps if s["lost_pairs"] == 0 and s["rooms_converged"] == s["rooms"]]
                if clean:
                    top = max(clean, key=lambda s: s["deliveries_per_s"])
                    result["max_lossless_deliveries_per_s"] = top["deliveries_per_s"]
                    result["max_lossless_p99_ms"] = top["latency_ms"]["p99"]
                if best is not None:
                    result["server_cpu_ms_per_1000_deliveries"] = best["server_cpu_ms_per_1000_deliveries"]
            elif name == "s3":
                await asyncio.sleep(plan.s3_hold)
                rss_after = proc_status_kb(target.pid, "VmRSS") or 0
                sockets = rooms * editors
                result.update(
                    sockets=sockets,
                    rss_before_mb=round(rss_before / 1024, 1),
                    rss_after_mb=round(rss_after / 1024, 1),
                    rss_per_connection_kb=round((rss_after - rss_before) / sockets, 1),
                )
            return result
    finally:
        await target.stop()


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

# scenario -> (figure, how to read it from a result, lower is better)
FIGURES: list[tuple[str, str, Any, bool]] = [
    ("join", "connect p50 ms", lambda r: r["connect_ms"]["p50"], True),
    ("join", "connect p95 ms", lambda r: r["connect_ms"]["p95"], True),
    ("idle", "idle edit p50 ms", lambda r: r["latency_ms"]["p50"], True),
    ("s2", "S2 p50 ms", lambda r: r["latency_ms"]["p50"], True),
    ("s2", "S2 p99 ms", lambda r: r["latency_ms"]["p99"], True),
    ("s2", "S2 delivered %", lambda r: r["delivered_pct"], False),
    ("s2", "S2 rooms converged", lambda r: r["rooms_converged"], False),
    ("s2", "S2 server CPU ms / 1k deliveries", lambda r: r["server_cpu_ms_per_1000_deliveries"], True),
    ("s2", "S2 Postgres CPU ms / 1k (ours)", lambda r: r["database_cpu_ms_per_1000_deliveries"], True),
    ("s2", "S2 commits over 100 ms (ours)", lambda r: r["update_log_commits"]["over_100_ms"], True),
    ("max", "MAX deliveries/s", lambda r: r["max_deliveries_per_s"], False),
    ("max", "MAX lossless deliveries/s (any p99)", lambda r: r.get("max_lossless_deliveries_per_s"), False),
    ("max", "MAX server CPU ms / 1k deliveries", lambda r: r.get("server_cpu_ms_per_1000_deliveries"), True),
    ("s3", "S3 RSS KB / connection", lambda r: r["rss_per_connection_kb"], True),
]


def figures(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per figure: each target's value and ours as a ratio to each peer."""
    rows = []
    for scen, label, read, lower_better in FIGURES:
        values: dict[str, float | None] = {}
        for target, by_scenario in results.items():
            result = by_scenario.get(scen)
            try:
                values[target] = read(result) if result and "error" not in result else None
            except (KeyError, TypeError):
                values[target] = None
        ratios = {}
        for ours in (t for t in values if t.startswith("ours")):
            for peer in PEERS:
                a, b = values.get(ours), values.get(peer)
                ratios[f"{ours}/{peer}"] = round(a / b, 2) if a is not None and b else None
        rows.append({"figure": label, "lower_is_better": lower_better, "values": values, "ratios": ratios})
    return rows


def median_figures(rounds: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The figures of several rounds in one: each value the median of its rounds, each ratio
    the median of the rounds' own ratios (each taken within one round, so paired against the
    machine's drift), with ``ratio_ranges`` their lowest and highest."""
    rows = []
    for i, first in enumerate(rounds[0]):
        per_round = [r[i] for r in rounds]
        values = {name: _spread(per_round, "values", name) for name in first["values"]}
        ratios = {name: _spread(per_round, "ratios", name) for name in first["ratios"]}
        rows.append(
            {
                "figure": first["figure"],
                "lower_is_better": first["lower_is_better"],
                "values": {name: seen[0] for name, seen in values.items()},
                "ratios": {name: seen[0] for name, seen in ratios.items()},
                "ratio_ranges": {name: seen[1] for name, seen in ratios.items()},
            }
        )
    return rows


def _spread(rows: list[dict[str, Any]], key: str, name: str) -> tuple[float | None, list[float] | None]:
    """The median of one cell over rounds (those that have it), and its [lowest, highest]."""
    seen = [row[key][name] for row in rows if row[key].get(name) is not None]
    if not seen:
        return None, None
    return round(statistics.median(seen), 2), [min(seen), max(seen)]


def print_figures(rows: list[dict[str, Any]], targets: list[str]) -> None:
    ours = [t for t in targets if t.startswith("ours")]
    peers = [t for t in targets if t in PEERS]
    header = ["figure", *targets, *(f"{o.removeprefix('ours-')}/{p}" for o in ours for p in peers)]
    table = [header]
    for row in rows:
        cells = [row["figure"], *(fmt(row["values"].get(t)) for t in targets)]
        for name in (f"{o}/{p}" for o in ours for p in peers):
            cell = fmt(row["ratios"].get(name))
            span = row["ratio_ranges"].get(name)
            if span is not None and span[0] != span[1]:
                cell += f" ({fmt(span[0])}-{fmt(span[1])})"
            cells.append(cell)
        table.append(cells)
    print_rows(table)


# --- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.stock", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="short windows and fewer MAX steps (~8-10 min)")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated of {SCENARIOS}")
    p.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated of {TARGETS}")
    p.add_argument("--duration", type=float, help="measured seconds per window (default 20, quick 6)")
    p.add_argument("--warmup", type=float, help="seconds before each window (default 3, quick 2)")
    p.add_argument("--max-rates", help="MAX: comma-separated edits/s per editor to try in order")
    p.add_argument("--client-procs", type=int, default=1, help="Node load workers for S2 and MAX")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every scenario this many times, the targets' order reversed every other round; "
        "figures are medians, ratios the median of each round's own",
    )
    p.add_argument(
        "--py-spy", metavar="DIR", help="py-spy profiles of our server (idle, S2): uv run --with py-spy"
    )
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "stock.json")
    return p.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    # Up to well past where every target stops (MAX stops at the first failing rate).
    rates = ",".join(map(str, range(20, 400, 40) if args.quick else [10, 20, *range(40, 401, 40)]))
    return Plan(
        warmup=args.warmup if args.warmup is not None else (2.0 if args.quick else 3.0),
        duration=args.duration if args.duration is not None else (6.0 if args.quick else 20.0),
        max_rates=[float(r) for r in (args.max_rates or rates).split(",")],
        s3_rooms=100,
        s3_hold=3.0 if args.quick else 10.0,
        procs=args.client_procs,
        py_spy=args.py_spy,
    )


async def amain(args: argparse.Namespace) -> int:
    raise_nofile_limit()
    plan = make_plan(args)
    scenarios = [s for s in args.scenarios.split(",") if s]
    targets = [t for t in args.targets.split(",") if t]
    unknown = (set(scenarios) - set(SCENARIOS)) | (set(targets) - set(TARGETS))
    if unknown:
        raise SystemExit(f"unknown scenario or target: {sorted(unknown)}")
    if args.rounds < 1:
        raise SystemExit("--rounds must be at least 1")
    pg = None
    if "ours-postgres" in targets:
        pg = ThrowawayDatabase(os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL))
        await pg.create()
    rounds: list[dict[str, dict[str, Any]]] = [{t: {} for t in targets} for _ in range(args.rounds)]
    started = time.time()
    report: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "git_commit": git_commit(),
        "git_dirty": git_dirty(),
        "machine": machine_info(),
        "plan": plan.__dict__,
        "rounds": [],
    }
    try:
        for scen in scenarios:
            for number, results in enumerate(rounds):
                of = f" (round {number + 1} of {len(rounds)})" if len(rounds) > 1 else ""
                print(f"== {scen}{of}", flush=True)
                # Reversed every other round: a drift of the machine's speed over the round
                # then favours no target.
                for target in targets if number % 2 == 0 else targets[::-1]:
                    try:
                        result = await scenario(scen, target, plan, pg if target == "ours-postgres" else None)
                    except (ServerError, RuntimeError, TimeoutError) as exc:
                        result = {"error": f"{type(exc).__name__}: {exc}"}
                    results[target][scen] = result
                    summary = {k: v for k, v in result.items() if k not in {"steps", "convergence_problems"}}
                    print(f"  {target}: {json.dumps(summary)[:400]}", flush=True)
    finally:
        if pg is not None:
            await pg.drop()
        report["elapsed_s"] = round(time.time() - started, 1)
        report["loadavg_at_end"] = list(os.getloadavg())
        report["rounds"] = [{"results": results, "figures": figures(results)} for results in rounds]
        report["figures"] = median_figures([r["figures"] for r in report["rounds"]])
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    print()
    print_figures(report["figures"], targets)
    loadavg = report["machine"]["loadavg_at_start"], report["loadavg_at_end"]
    print(f"\nload average at start {loadavg[0]}, at end {loadavg[1]}")
    print(f"results: {args.out}")
    return 1 if any("error" in r for results in rounds for by in results.values() for r in by.values()) else 0


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(amain(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
