"""REST benchmark: open-loop load on a real server process, SQLite and Postgres.

    uv run python -m bench.rest [--backends sqlite,postgres] [--rate 500] [--duration 20]
                                [--out bench/results/rest.json]

For each backend it starts ``musicplayground db upgrade`` + ``musicplayground serve`` as a
subprocess on a free port (fresh data dir; for Postgres a fresh database, dropped at the
end), seeds one anonymous user with ~50 loops, then drives each scenario at a fixed
request rate. Requests are scheduled at fixed instants whatever the responses do (open
loop), so a slow server cannot slow the client down and hide its own latency
(coordinated omission). Latency is measured from the scheduled instant (primary) and from
the moment the request headers actually left the client.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg

REPO = Path(__file__).resolve().parent.parent
TARGET_SCENARIO = "get"
TARGET_RATE = 500.0
TARGET_P95_MS = 10.0
MAX_ERROR_RATE = 0.01
REQUEST_TIMEOUT_S = 10.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- /proc and machine helpers ----------------------------------------------------------


def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a whole process (all threads), in seconds."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # skip "pid (comm) "; fields[0] is field 3
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status_kb(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return (total - idle) / CLK_TCK, total / CLK_TCK


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def git_dirty() -> bool | None:
    """True if the work tree has uncommitted changes (the benchmark measures the work tree)."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def machine_info() -> dict[str, Any]:
    cpu_model = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "loadavg_at_start": list(os.getloadavg()),
        "mem_total_mb": (meminfo_kb("MemTotal") or 0) // 1024 or None,
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "platform": platform.platform(),
    }


def meminfo_kb(key: str) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_command() -> list[str]:
    """The ``musicplayground`` console script of this interpreter's environment.

    ``python -m musicplayground.cli`` does not work (cli.py has no ``__main__`` guard).
    """
    script = Path(sys.executable).parent / "musicplayground"
    if script.exists():
        return [str(script)]
    found = shutil.which("musicplayground")
    if found:
        return [found]
    return [sys.executable, "-c", "from musicplayground.cli import main; main()"]


# --- Postgres: a throwaway database ------------------------------------------------------


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


class ThrowawayDatabase:
    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.name = f"mp_bench_{secrets.token_hex(6)}"
        self.created = False

    @property
    def url(self) -> str:
        return _with_database(self.admin_url, self.name)

    async def create(self) -> None:
        conn = await asyncpg.connect(self.admin_url, timeout=10)
        try:
            await conn.execute(f'CREATE DATABASE "{self.name}"')
            self.created = True
        finally:
            await conn.close()

    async def backend_pids(self) -> list[int]:
        conn = await asyncpg.connect(self.admin_url, timeout=10)
        try:
            rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", self.name)
        finally:
            await conn.close()
        return [int(r["pid"]) for r in rows]

    async def drop(self) -> None:
        if not self.created:
            return
        conn = await asyncpg.connect(self.admin_url, timeout=10)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            self.created = False
        finally:
            await conn.close()


# --- the server under test ---------------------------------------------------------------


class ServerError(RuntimeError):
    pass


class Server:
    """``musicplayground db upgrade`` then ``musicplayground serve`` in a fresh data dir."""

    def __init__(self, backend: str, database_url: str | None) -> None:
        self.backend = backend
        self.database_url = database_url
        self.data_dir = Path(tempfile.mkdtemp(prefix=f"mp-bench-{backend}-"))
        self.log_path = self.data_dir / "server.log"
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.proc: asyncio.subprocess.Process | None = None
        self.startup_s: float | None = None

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "PORT", "HOST"}}
        env.update(DATA_DIR=str(self.data_dir), SECRET_KEY=secrets.token_urlsafe(36), LOG_LEVEL="WARNING")
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        return env

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    async def start(self, startup_timeout: float = 90.0) -> None:
        started = time.perf_counter()
        env = self._env()
        upgrade = await asyncio.create_subprocess_exec(
            *server_command(),
            "db",
            "upgrade",
            cwd=REPO,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await upgrade.communicate()
        if upgrade.returncode != 0:
            raise ServerError(f"`db upgrade` failed ({upgrade.returncode}):\n{out.decode(errors='replace')}")
        with self.log_path.open("wb") as log:
            # A new session: a Ctrl-C in the terminal reaches us only; we stop the server.
            self.proc = await asyncio.create_subprocess_exec(
                *server_command(),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + startup_timeout
        async with aiohttp.ClientSession() as session:
            while True:
                if self.proc.returncode is not None:
                    raise ServerError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    async with session.get(
                        self.base_url + "/healthz", timeout=aiohttp.ClientTimeout(total=2)
                    ) as resp:
                        if resp.status == 200:
                            self.startup_s = round(time.perf_counter() - started, 2)
                            return
                if time.monotonic() > deadline:
                    raise ServerError(f"server not healthy after {startup_timeout:.0f}s:\n{self.log_tail()}")
                await asyncio.sleep(0.1)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def stop(self) -> int | None:
        code = None
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                code = await asyncio.wait_for(proc.wait(), timeout=20)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                code = await proc.wait()
        elif proc is not None:
            code = proc.returncode
        shutil.rmtree(self.data_dir, ignore_errors=True)
        return code


# --- seeding ------------------------------------------------------------------------------

PROGRESSIONS = [
    [("C", "I"), ("G", "V"), ("Am", "vi"), ("F", "IV")],
    [("Am", "i"), ("F", "VI"), ("C", "III"), ("G", "VII")],
    [("D m7", "ii"), ("G7", "V"), ("C maj7", "I"), ("A7", "VI")],
    [("E", "I"), ("C#m", "vi"), ("A", "IV"), ("B", "V")],
]
SOUNDS = ["drum-kick", "drum-snare", "drum-hihat", "drum-clap", "synth-lead", "synth-bass", "pad-warm"]
NOTES = ["C4", "D4", "E4", "G4", "A4", "C5", "E3", "G3"]


def loop_payload(i: int, rng: random.Random) -> dict[str, Any]:
    progression = rng.choice(PROGRESSIONS)
    steps: list[dict[str, Any]] = []
    for step in range(32):
        sound = SOUNDS[(step + i) % len(SOUNDS)]
        item: dict[str, Any] = {
            "step": step,
            "soundId": sound,
            "velocity": round(rng.uniform(0.5, 1.0), 2),
            "row": step % 4,
        }
        if sound.startswith(("synth", "pad")):
            item["note"] = rng.choice(NOTES)
            item["duration16"] = rng.choice([1, 2, 4])
        steps.append(item)
    return {
        "name": f"Bench loop {i:02d}",
        "length": 4,
        "bpm": rng.randint(80, 140),
        "color": f"#{rng.randrange(0x1000000):06X}",
        "chordProgression": [
            {"bar": bar, "chord": chord, "roman": roman} for bar, (chord, roman) in enumerate(progression)
        ],
        "iconSequence": steps,
        "isPublic": i % 3 == 0,
    }


async def seed(session: aiohttp.ClientSession, base: str, count: int) -> tuple[str, list[str]]:
    async with session.post(base + "/api/auth/anonymous") as resp:
        if resp.status != 201:
            raise ServerError(f"POST /api/auth/anonymous -> {resp.status}: {await resp.text()}")
        token = (await resp.json())["token"]
    headers = {"Authorization": f"Bearer {token}"}
    rng = random.Random(42)
    ids = []
    for i in range(count):
        async with session.post(base + "/api/loops", json=loop_payload(i, rng), headers=headers) as resp:
            if resp.status != 201:
                raise ServerError(f"POST /api/loops -> {resp.status}: {await resp.text()}")
            ids.append((await resp.json())["id"])
    return token, ids


# --- open-loop load -----------------------------------------------------------------------


@dataclass
class Samples:
    sent: int = 0
    ok_from_scheduled: list[float] = field(default_factory=list)
    ok_from_sent: list[float] = field(default_factory=list)
    errors: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    first_scheduled: float = 0.0
    last_done: float = 0.0


async def _on_headers_sent(_session: Any, ctx: SimpleNamespace, _params: Any) -> None:
    if ctx.trace_request_ctx is not None:  # only load requests carry a stamp
        ctx.trace_request_ctx.sent = time.perf_counter()


def trace_config() -> aiohttp.TraceConfig:
    config = aiohttp.TraceConfig()
    config.on_request_headers_sent.append(_on_headers_sent)
    return config


async def open_loop(
    session: aiohttp.ClientSession,
    next_url: Any,
    headers: dict[str, str],
    rate: float,
    duration: float,
) -> Samples:
    """Fire ``rate * duration`` GETs at fixed instants; wait for all of them to finish."""
    samples = Samples()
    interval = 1.0 / rate
    total = round(rate * duration)
    pending: set[asyncio.Task[None]] = set()
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)

    async def one(url: str, scheduled: float) -> None:
        stamp = SimpleNamespace(sent=None)
        status = None
        try:
            async with session.get(url, headers=headers, timeout=timeout, trace_request_ctx=stamp) as resp:
                await resp.read()
                status = resp.status
        except Exception as exc:  # every failure counts; the kind goes in the report
            samples.errors += 1
            samples.statuses[type(exc).__name__] += 1
            return
        done = time.perf_counter()
        samples.last_done = max(samples.last_done, done)
        samples.statuses[str(status)] += 1
        if 200 <= status < 300:
            samples.ok_from_scheduled.append(done - scheduled)
            samples.ok_from_sent.append(done - (stamp.sent or scheduled))
        else:
            samples.errors += 1

    start = time.perf_counter() + 0.005
    samples.first_scheduled = start
    i = 0
    while i < total:
        now = time.perf_counter()
        # Launch everything that is due (catches up if the loop woke late: no omission).
        while i < total and start + i * interval <= now:
            task = asyncio.create_task(one(next_url(), start + i * interval))
            pending.add(task)
            task.add_done_callback(pending.discard)
            i += 1
        samples.sent = i
        if i < total:
            await asyncio.sleep(max(0.0, start + i * interval - time.perf_counter()))
    if pending:
        await asyncio.wait(set(pending), timeout=REQUEST_TIMEOUT_S + 5)
        for task in list(pending):  # cannot happen with the client timeout; counted as errors
            task.cancel()
    return samples


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def latency_summary(values: list[float]) -> dict[str, float | None]:
    ms = sorted(v * 1000 for v in values)

    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 3)

    return {
        "p50": r(percentile(ms, 50)),
        "p95": r(percentile(ms, 95)),
        "p99": r(percentile(ms, 99)),
        "max": r(ms[-1] if ms else None),
        "mean": r(sum(ms) / len(ms) if ms else None),
    }


def per_request_ms(cpu_s: float | None, completed: int) -> float | None:
    return None if cpu_s is None or not completed else round(cpu_s * 1000 / completed, 3)


async def run_scenario(
    session: aiohttp.ClientSession,
    server: Server,
    pg: ThrowawayDatabase | None,
    name: str,
    next_url: Any,
    headers: dict[str, str],
    rate: float,
    args: argparse.Namespace,
) -> dict[str, Any]:
    if args.warmup > 0:
        await open_loop(session, next_url, headers, rate, args.warmup)
    db_pids = await pg.backend_pids() if pg else []
    db_cpu_before = {pid: proc_cpu_seconds(pid) for pid in db_pids}
    cpu_before = proc_cpu_seconds(server.pid)
    client_cpu_before = time.process_time()
    machine_before = machine_cpu()
    samples = await open_loop(session, next_url, headers, rate, args.duration)
    cpu_after = proc_cpu_seconds(server.pid)
    client_cpu = time.process_time() - client_cpu_before
    machine_after = machine_cpu()
    machine_busy = machine_after[0] - machine_before[0]
    machine_total = max(machine_after[1] - machine_before[1], 1e-9)
    db_cpu = None
    if pg:
        db_cpu = 0.0
        for pid in await pg.backend_pids():
            after = proc_cpu_seconds(pid)
            if after is not None:  # a backend opened during the window counts entirely
                db_cpu += after - (db_cpu_before.get(pid) or 0.0)

    completed = len(samples.ok_from_scheduled)
    window = max(samples.last_done - samples.first_scheduled, 1e-9)
    server_cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    rss_kb = proc_status_kb(server.pid, "VmRSS")
    hwm_kb = proc_status_kb(server.pid, "VmHWM")
    return {
        "backend": server.backend,
        "scenario": name,
        "target_rate_rps": rate,
        "duration_s": args.duration,
        "sent": samples.sent,
        "completed": completed,
        "errors": samples.sent - completed,  # non-2xx, exceptions and timeouts
        "error_rate": round(1 - completed / samples.sent, 5) if samples.sent else None,
        "statuses": dict(samples.statuses),
        "window_s": round(window, 3),
        "throughput_rps": round(completed / window, 1),
        "latency_ms": latency_summary(samples.ok_from_scheduled),
        "latency_from_send_ms": latency_summary(samples.ok_from_sent),
        "server_cpu_s": None if server_cpu is None else round(server_cpu, 3),
        "server_cpu_ms_per_req": per_request_ms(server_cpu, completed),
        "server_cpu_util": round(server_cpu / window, 3) if server_cpu is not None else None,
        "db_cpu_s": None if db_cpu is None else round(db_cpu, 3),
        "db_cpu_ms_per_req": per_request_ms(db_cpu, completed),
        "client_cpu_s": round(client_cpu, 3),
        "client_cpu_util": round(client_cpu / window, 3),
        # The server is one event loop: 1 s of CPU / CPU per request bounds its throughput.
        "est_max_rps_one_core": round(completed / server_cpu) if server_cpu and completed else None,
        "server_startup_s": server.startup_s,
        # Busy share of all the machine's cores during the window; compare with the server,
        # client and database shares to see whether something else was competing.
        "machine_cpu_busy_pct": round(100 * machine_busy / machine_total, 1),
        "other_cpu_s": round(machine_busy - (server_cpu or 0) - client_cpu - (db_cpu or 0), 3),
        "server_rss_mb": None if rss_kb is None else round(rss_kb / 1024, 1),
        "server_peak_rss_mb": None if hwm_kb is None else round(hwm_kb / 1024, 1),
    }


async def bench_backend(backend: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    pg = ThrowawayDatabase(args.postgres_url) if backend == "postgres" else None
    server: Server | None = None
    try:
        if pg:
            await pg.create()
        server = Server(backend, pg.url if pg else None)
        print(f"[{backend}] starting server on {server.base_url} ...", flush=True)
        await server.start()
        connector = aiohttp.TCPConnector(limit=args.connections, limit_per_host=args.connections)
        async with aiohttp.ClientSession(connector=connector, trace_configs=[trace_config()]) as session:
            token, ids = await seed(session, server.base_url, args.loops)
            print(f"[{backend}] seeded {len(ids)} loops (server pid {server.pid})", flush=True)
            headers = {"Authorization": f"Bearer {token}"}
            base = server.base_url
            rng = random.Random(7)
            get_urls = [f"{base}/api/loops/{loop_id}" for loop_id in ids]
            list_url = f"{base}/api/loops?page=1&limit=20"
            scenarios = {
                "get": lambda: rng.choice(get_urls),
                "list": lambda: list_url,
                "healthz": lambda: f"{base}/healthz",  # baseline: the HTTP stack alone
            }
            results = []
            for rate in args.rates:
                for name in args.scenarios:
                    print(
                        f"[{backend}] {name}: {args.warmup:g}s warm-up + {args.duration:g}s "
                        f"at {rate:g} req/s ...",
                        flush=True,
                    )
                    result = await run_scenario(
                        session, server, pg, name, scenarios[name], headers, rate, args
                    )
                    results.append(result)
                    lat = result["latency_ms"]
                    print(
                        f"[{backend}] {name}: {result['completed']}/{result['sent']} ok, "
                        f"p50 {fmt(lat['p50'])} p95 {fmt(lat['p95'])} p99 {fmt(lat['p99'])} ms",
                        flush=True,
                    )
        return results
    finally:
        try:
            if server is not None:
                code = await server.stop()
                print(f"[{backend}] server stopped (exit {code})", flush=True)
        finally:
            if pg:
                await pg.drop()


# --- report -------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_table(results: list[dict[str, Any]]) -> None:
    header = (
        "backend",
        "scenario",
        "rate",
        "sent",
        "ok",
        "err",
        "req/s",
        "p50",
        "p95",
        "p99",
        "max",
        "p95(sent)",
        "srv CPU ms/req",
        "db CPU ms/req",
        "srv CPU %",
        "cli CPU %",
        "max req/s est",
        "machine busy %",
        "RSS MB",
    )
    rows = [header]
    for r in results:
        lat, lat_sent = r["latency_ms"], r["latency_from_send_ms"]
        rows.append(
            (
                r["backend"],
                r["scenario"],
                f"{r['target_rate_rps']:g}",
                str(r["sent"]),
                str(r["completed"]),
                str(r["errors"]),
                fmt(r["throughput_rps"], 1),
                fmt(lat["p50"]),
                fmt(lat["p95"]),
                fmt(lat["p99"]),
                fmt(lat["max"]),
                fmt(lat_sent["p95"]),
                fmt(r["server_cpu_ms_per_req"], 3),
                fmt(r["db_cpu_ms_per_req"], 3),
                fmt(None if r["server_cpu_util"] is None else r["server_cpu_util"] * 100, 0),
                fmt(r["client_cpu_util"] * 100, 0),
                str(r["est_max_rps_one_core"] or "-"),
                fmt(r["machine_cpu_busy_pct"], 0),
                fmt(r["server_rss_mb"], 1),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    print()
    print("latencies in ms, measured from the scheduled send time; p95(sent) from the actual send")
    for n, row in enumerate(rows):
        cells = zip(row, widths, strict=True)
        print("  ".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in enumerate(cells)))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def verdicts(results: list[dict[str, Any]], backends: list[str]) -> list[dict[str, Any]]:
    """p95 of ``get`` against the target, for every backend and rate measured."""
    out = []
    for backend in backends:
        for r in results:
            if r["backend"] == backend and r["scenario"] == TARGET_SCENARIO:
                p95 = r["latency_ms"]["p95"]
                out.append(
                    {
                        "backend": backend,
                        "rate_rps": r["target_rate_rps"],
                        "p95_ms": p95,
                        "pass": p95 is not None and p95 < TARGET_P95_MS,
                        "at_target_rate": r["target_rate_rps"] == TARGET_RATE,
                    }
                )
    return out


# --- entry point --------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.rest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgres", help="comma-separated: sqlite,postgres")
    parser.add_argument(
        "--scenarios", default="get,list", help="comma-separated: get,list (and healthz, a baseline)"
    )
    parser.add_argument(
        "--rate",
        default="500",
        help="requests per second (open loop); a comma-separated list runs each rate in turn",
    )
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per scenario")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each scenario")
    parser.add_argument("--loops", type=int, default=50, help="loops to seed")
    parser.add_argument("--connections", type=int, default=64, help="client connection pool size")
    parser.add_argument("--out", default="bench/results/rest.json", help="JSON results file")
    args = parser.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for backend in args.backends:
        if backend not in {"sqlite", "postgres"}:
            parser.error(f"unknown backend {backend!r}")
    for scenario in args.scenarios:
        if scenario not in {"get", "list", "healthz"}:
            parser.error(f"unknown scenario {scenario!r}")
    try:
        args.rates = [float(r) for r in args.rate.split(",") if r.strip()]
    except ValueError:
        parser.error(f"--rate must be numbers, got {args.rate!r}")
    if not args.rates or min(args.rates) <= 0 or args.duration <= 0:
        parser.error("--rate and --duration must be positive")
    args.postgres_url = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    return args


def write_report(out: Path, report: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")


async def amain(args: argparse.Namespace) -> int:
    # SIGTERM cleans up like Ctrl-C: cancel the run, the finally blocks stop the server.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    report: dict[str, Any] = {
        "benchmark": "rest",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git_commit": git_commit(),
        "git_dirty": git_dirty(),
        "machine": machine_info(),
        "config": {
            "backends": args.backends,
            "scenarios": args.scenarios,
            "rates_rps": args.rates,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "seeded_loops": args.loops,
            "client_connections": args.connections,
            "request_timeout_s": REQUEST_TIMEOUT_S,
            "latency": "from the scheduled send time (open loop); latency_from_send_ms from headers sent",
        },
        "target": {"scenario": TARGET_SCENARIO, "rate_rps": TARGET_RATE, "p95_ms_below": TARGET_P95_MS},
        "results": [],
        "failures": {},
    }
    exit_code = 0
    out = Path(args.out)
    try:
        for backend in args.backends:
            try:
                report["results"].extend(await bench_backend(backend, args))
            except (ServerError, OSError, asyncpg.PostgresError, aiohttp.ClientError) as exc:
                print(f"[{backend}] FAILED: {exc}", file=sys.stderr, flush=True)
                report["failures"][backend] = str(exc)
                exit_code = 1
    finally:
        report["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        report["verdict"] = verdicts(report["results"], args.backends)
        write_report(out, report)

    print_table(report["results"])
    print()
    print(f"target (informational): {TARGET_SCENARIO} p95 < {TARGET_P95_MS:g} ms at {TARGET_RATE:g} req/s")
    for verdict in report["verdict"]:
        state = "PASS" if verdict["pass"] else "FAIL"
        note = "" if verdict["at_target_rate"] else "  (not the target rate)"
        print(
            f"  {verdict['backend']:<8} at {verdict['rate_rps']:g} req/s: {state} "
            f"(p95 {fmt(verdict['p95_ms'])} ms){note}"
        )
    for backend in args.backends:
        if not any(v["backend"] == backend for v in report["verdict"]):
            print(f"  {backend:<8}: NOT MEASURED")
    for r in report["results"]:
        if r["error_rate"] is not None and r["error_rate"] > MAX_ERROR_RATE:
            where = f"{r['backend']}/{r['scenario']} at {r['target_rate_rps']:g} req/s"
            print(f"ERROR: {where} error rate {r['error_rate']:.2%} > 1%: {r['statuses']}")
            exit_code = 1
    print(f"\nresults written to {out}")
    return exit_code


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(amain(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; server stopped, benchmark database dropped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
