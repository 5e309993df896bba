"""One measured edit run against a server, and py-spy recording / summaries."""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import math
import random
import re
import shutil
import signal
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import (
    Server,
    ThrowawayDatabase,
    anonymous_token,
    cpu_spent,
    create_loop,
    latency_summary,
    machine_cpu,
    proc_status_kb,
)
from bench.realtime.wire import WS_PATH, perf_counter, unb64_floats
from bench.realtime.workers import RelayServer, WorkerProc

TARGET_P99_MS = 100.0
TARGET_THROUGHPUT_DPS = 8000.0
TARGET_IDLE_RSS_MB = 1024.0
TARGET_OPEN_MS = 100.0
GRACE_S = 5.0


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
        db0 = await bench.pg.backends_cpu() if bench.pg else {}
        if args.py_spy:
            py_spy = await start_py_spy(args.py_spy, label, server.pid, args.duration)
        await _sleep_until(t_meas1)
        srv1, cli1, mach1 = server.cpu_seconds(), [w.cpu_seconds() for w in workers], machine_cpu()
        db1 = await bench.pg.backends_cpu() if bench.pg else {}
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
        lat_sent.extend(unb64_floats(r["lat_sent"]))
        lat_sched.extend(unb64_floats(r["lat_sched"]))
        lat_at.extend(unb64_floats(r["lat_at"]))
        send_lag.extend(unb64_floats(r["send_lag"]))
    server_cpu = None if srv0 is None or srv1 is None else srv1 - srv0
    client_cpu = sum((b or 0.0) - (a or 0.0) for a, b in zip(cli0, cli1, strict=True))
    busy = mach1[0] - mach0[0]
    machine_total = max(mach1[1] - mach0[1], 1e-9)
    db_cpu = cpu_spent(db0, db1) if bench.pg else None
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
    ("snapshots / maintenance", ("RoomRegistry._maintain", "RoomPersistence.snapshot")),
    ("document load: snapshot + log replay (RoomPersistence.load)", ("RoomPersistence.load",)),
    ("socket connect handler: auth, role, join, sync-step-1 (_on_connect)", ("_on_connect",)),
    ("sync-update: CRDT apply (Room.apply)", ("Room.apply",)),
    ("update log writer task (excl. SQL)", ("UpdateLog._run",)),
    ("sync-update handler, rest (rate limit, log append wait)", ("_on_sync_update", "client_update",
                                                                  "persist_then_relay", "UpdateLog.append")),
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
