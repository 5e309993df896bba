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
import json
import os
import random
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import asyncpg

from bench.common import (
    DEFAULT_POSTGRES_URL,
    Server,
    ServerError,
    ThrowawayDatabase,
    anonymous_token,
    cpu_spent,
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
)
from bench.realtime.runs import start_py_spy, stop_py_spy

TARGET_SCENARIO = "get"
TARGET_RATE = 500.0
TARGET_P95_MS = 10.0
# The listing's target (issue 11): the same p95, and server CPU per request within this
# factor of ``get`` on the same backend at the same rate.
LIST_CPU_VS_GET = 2.0
MAX_ERROR_RATE = 0.01
REQUEST_TIMEOUT_S = 10.0


# --- seeding ------------------------------------------------------------------------------


async def seed(session: aiohttp.ClientSession, base: str, count: int) -> tuple[str, list[str]]:
    """One anonymous user with ``count`` loops (every third one public)."""
    token = await anonymous_token(session, base)
    rng = random.Random(42)
    ids = [await create_loop(session, base, token, i, rng, public=i % 3 == 0) for i in range(count)]
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
    db_cpu_before = await pg.backends_cpu() if pg else {}
    label = f"{server.backend}-{name}-{rate:g}"
    profiler = await start_py_spy(args.py_spy, label, server.pid, args.duration) if args.py_spy else None
    cpu_before = proc_cpu_seconds(server.pid)
    client_cpu_before = time.process_time()
    machine_before = machine_cpu()
    samples = await open_loop(session, next_url, headers, rate, args.duration)
    cpu_after = proc_cpu_seconds(server.pid)
    await stop_py_spy(profiler, args.py_spy, label, wait=True)
    client_cpu = time.process_time() - client_cpu_before
    machine_after = machine_cpu()
    machine_busy = machine_after[0] - machine_before[0]
    machine_total = max(machine_after[1] - machine_before[1], 1e-9)
    db_cpu = cpu_spent(db_cpu_before, await pg.backends_cpu()) if pg else None

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
    print()
    print("latencies in ms, measured from the scheduled send time; p95(sent) from the actual send")
    print_rows(rows, left=2)


def print_verdict(verdict: dict[str, Any], figures: str) -> None:
    state = "PASS" if verdict["pass"] else "FAIL"
    note = "" if verdict["at_target_rate"] else "  (not the target rate)"
    print(f"  {verdict['backend']:<8} at {verdict['rate_rps']:g} req/s: {state} ({figures}){note}")


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


def list_verdicts(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``list`` against its target: p95, and CPU per request relative to ``get`` (same run)."""
    by_key = {(r["backend"], r["target_rate_rps"], r["scenario"]): r for r in results}
    out = []
    for (backend, rate, scenario), listed in by_key.items():
        got = by_key.get((backend, rate, TARGET_SCENARIO))
        if scenario != "list" or got is None:
            continue
        p95 = listed["latency_ms"]["p95"]
        list_cpu, get_cpu = listed["server_cpu_ms_per_req"], got["server_cpu_ms_per_req"]
        ratio = round(list_cpu / get_cpu, 2) if list_cpu and get_cpu else None
        out.append(
            {
                "backend": backend,
                "rate_rps": rate,
                "p95_ms": p95,
                "cpu_ratio_vs_get": ratio,
                "pass": p95 is not None
                and p95 < TARGET_P95_MS
                and ratio is not None
                and ratio <= LIST_CPU_VS_GET,
                "at_target_rate": rate == TARGET_RATE,
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
    parser.add_argument(
        "--py-spy",
        metavar="DIR",
        help="a py-spy profile of the server per scenario (raw + summary) in DIR: uv run --with py-spy",
    )
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
    args.postgres_url = os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL)
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
        report["list_verdict"] = list_verdicts(report["results"])
        write_report(out, report)

    print_table(report["results"])
    print()
    print(f"target (informational): {TARGET_SCENARIO} p95 < {TARGET_P95_MS:g} ms at {TARGET_RATE:g} req/s")
    for verdict in report["verdict"]:
        print_verdict(verdict, f"p95 {fmt(verdict['p95_ms'])} ms")
    if report["list_verdict"]:
        print(
            f"list target (informational): p95 < {TARGET_P95_MS:g} ms and server CPU/request "
            f"<= {LIST_CPU_VS_GET:g}x get's"
        )
    for verdict in report["list_verdict"]:
        print_verdict(
            verdict, f"p95 {fmt(verdict['p95_ms'])} ms, CPU {fmt(verdict['cpu_ratio_vs_get'])}x get"
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
