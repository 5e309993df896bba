"""Two instances, one room: what the Redis bus adds to an edit's path.

    uv run python -m bench.cluster                 # 4 rooms x 6 editors, 5 edits/s each, 15 s
    uv run python -m bench.cluster --duration 5    # quick smoke

Starts two real servers (``musicplayground serve``) on one throwaway Postgres database and
one Redis (``BENCH_REDIS_URL``, default the local one, with a channel prefix of its own).
The editors of every room are split between the instances (even ones on A, odd ones on B).
Each editor sets ``bench[<editor>:<n>]`` at a fixed rate; every other editor of the room
observes the key. A delivery is "same-instance" when sender and receiver are connected to
the same server (the single-instance path, measured in the same run) and "cross-instance"
otherwise (sender -> its server -> durable log -> Redis -> the other server -> receiver).
Latency runs from the sender's transaction to the receiver's observer, both in this process.

The load client is this repo's Python client (``loadtest.client.CollabClient``), not the npm
y-socket.io provider of bench/realtime.py: both paths of one run pay the same client cost,
so their difference is what the bus adds. Writes ``bench/results/cluster.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from pycrdt import Map, MapEvent

from bench.common import (
    REPO,
    Server,
    ThrowawayDatabase,
    anonymous_token,
    create_loop,
    fmt,
    git_commit,
    git_dirty,
    latency_summary,
    machine_info,
    print_rows,
)
from loadtest.client import CollabClient

DEFAULT_OUT = REPO / "bench" / "results" / "cluster.json"


@dataclass
class Editor:
    index: int
    room: int
    server: str  # "A" or "B"
    client: CollabClient
    sent: int = 0
    # pycrdt stops calling an observer once its map wrapper and subscription are collected.
    keep_alive: tuple[Any, ...] = ()


@dataclass
class Recorder:
    """Send times by key, and latencies by path, while ``measuring``."""

    sent_at: dict[str, tuple[float, str]] = field(default_factory=dict)  # key -> (time, server)
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"same": [], "cross": []})
    deliveries_by_server: dict[str, int] = field(default_factory=lambda: {"A": 0, "B": 0})
    measuring: bool = False

    def observer(self, receiver: Editor) -> Any:
        def on_change(event: MapEvent) -> None:
            now = time.perf_counter()
            for key in event.keys:  # type: ignore[attr-defined]  # pycrdt declares MapEvent.keys only in __slots__
                sent = self.sent_at.get(key)
                if sent is None or not self.measuring or key.split(":")[0] == str(receiver.index):
                    continue  # the sender's own observer sees its edit at once: not a delivery
                sent_time, sender_server = sent
                path = "same" if sender_server == receiver.server else "cross"
                self.latencies[path].append(now - sent_time)
                self.deliveries_by_server[receiver.server] += 1

        return on_change


async def edit_loop(editor: Editor, recorder: Recorder, rate: float, stop: asyncio.Event) -> None:
    bench = editor.client.doc.get("bench", type=Map)
    interval = 1.0 / rate
    due = time.perf_counter() + interval * (editor.index % 10) / 10  # spread the editors
    while not stop.is_set():
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        key = f"{editor.index}:{editor.sent}"
        editor.sent += 1
        recorder.sent_at[key] = (time.perf_counter(), editor.server)
        bench[key] = editor.sent
        due += interval


async def run(args: argparse.Namespace) -> dict[str, Any]:
    db = ThrowawayDatabase(
        os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    await db.create()
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    secret = secrets.token_urlsafe(36)
    env = {"REDIS_URL": redis_url, "REDIS_PREFIX": f"bench-{secrets.token_hex(4)}:"}
    servers = {name: Server("postgres", db.url, extra_env=env, secret=secret) for name in ("A", "B")}
    editors: list[Editor] = []
    try:
        for server in servers.values():
            await server.start()
        recorder = Recorder()
        rng = random.Random(7)
        async with aiohttp.ClientSession() as http:
            token = await anonymous_token(http, servers["A"].base_url)
            rooms = [await create_loop(http, servers["A"].base_url, token, i, rng) for i in range(args.rooms)]
        for room_index, loop_id in enumerate(rooms):
            for e in range(args.editors):
                name = "A" if e % 2 == 0 else "B"
                client = CollabClient(
                    servers[name].base_url, "loop", loop_id, token=token, awareness_timer=False
                )
                await client.connect()
                editor = Editor(len(editors), room_index, name, client)
                bench = client.doc.get("bench", type=Map)
                editor.keep_alive = (bench, bench.observe(recorder.observer(editor)))
                editors.append(editor)
        stop = asyncio.Event()
        tasks = [asyncio.create_task(edit_loop(e, recorder, args.rate, stop)) for e in editors]
        await asyncio.sleep(args.warmup)
        cpu_before = {name: s.cpu_seconds() for name, s in servers.items()}
        recorder.measuring = True
        started = time.perf_counter()
        await asyncio.sleep(args.duration)
        recorder.measuring = False
        window = time.perf_counter() - started
        cpu_after = {name: s.cpu_seconds() for name, s in servers.items()}
        stop.set()
        await asyncio.gather(*tasks)
        await asyncio.sleep(2)  # let the last edits land before checking convergence
        converged = all(
            dict(e.client.doc.get("bench", type=Map))
            == dict(editors[e.room * args.editors].client.doc.get("bench", type=Map))
            for e in editors
        )
        per_server = {}
        for name in servers:
            before, after = cpu_before[name], cpu_after[name]
            cpu = None if before is None or after is None else after - before
            delivered = recorder.deliveries_by_server[name]
            per_server[name] = {
                "cpu_s": None if cpu is None else round(cpu, 3),
                "deliveries": delivered,
                "cpu_ms_per_1000_deliveries": None
                if cpu is None or not delivered
                else round(cpu / delivered * 1e6, 1),
            }
        same, cross = (
            latency_summary(recorder.latencies["same"]),
            latency_summary(recorder.latencies["cross"]),
        )
        added = None if same["p50"] is None or cross["p50"] is None else round(cross["p50"] - same["p50"], 3)
        return {
            "benchmark": "cluster",
            "git_commit": git_commit(),
            "git_dirty": git_dirty(),
            "machine": machine_info(),
            "config": vars(args) | {"client": "loadtest.client.CollabClient (Python)"},
            "window_s": round(window, 2),
            "latency_ms": {"same_instance": same, "cross_instance": cross},
            "cross_adds_p50_ms": added,
            "target": "cross-instance path adds <= 5 ms at p50",
            "meets_target": None if added is None else added <= 5.0,
            "servers": per_server,
            "converged": converged,
        }
    finally:
        for editor in editors:
            await editor.client.close()
        for server in servers.values():
            await server.stop()
        await db.drop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rooms", type=int, default=4)
    parser.add_argument("--editors", type=int, default=6, help="per room, split between the two instances")
    parser.add_argument("--rate", type=float, default=5.0, help="edits per second per editor")
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result["config"]["out"] = str(args.out)
    args.out.write_text(json.dumps(result, indent=2))
    lat = result["latency_ms"]
    print_rows(
        [
            ["path", "p50 ms", "p99 ms", "deliveries"],
            *(
                [name, fmt(lat[key]["p50"]), fmt(lat[key]["p99"]), str(lat[key]["count"])]
                for name, key in (("same instance", "same_instance"), ("cross instance", "cross_instance"))
            ),
        ]
    )
    print()
    print_rows(
        [
            ["server", "CPU s", "deliveries", "CPU ms / 1,000 deliveries"],
            *(
                [name, fmt(s["cpu_s"]), str(s["deliveries"]), fmt(s["cpu_ms_per_1000_deliveries"], 1)]
                for name, s in result["servers"].items()
            ),
        ]
    )
    added = fmt(result["cross_adds_p50_ms"])
    print(f"\ncross-instance adds {added} ms at p50; converged: {result['converged']}")
    print(f"written to {args.out}")
    sys.exit(0 if result["converged"] else 1)


if __name__ == "__main__":
    main()
