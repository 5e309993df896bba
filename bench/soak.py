"""The soak: many stock-client sockets for many minutes, joining and leaving, rooms opened and
unloaded, and nothing may leak or be lost.

    uv run python -m bench.soak                               # 1,000 sockets x 10 minutes (~12 min)
    uv run python -m bench.soak --minutes 3 --rooms 50        # a shorter one

1,000 sockets (250 rooms x 4, ``bench/js/load-worker.mjs``: ``yjs`` + y-socket.io's
provider, in 10 Node workers) edit at 0.2 edits/s each. Every minute is one measured edit
window (``bench.stock.edit_run``: latency, deliveries lost, rooms converged) followed by the
churn: 10 % of the sockets leave and join again with a fresh ``Y.Doc``, half of them as
single sockets of other rooms and half as whole rooms, which empty, unload
(``ROOM_IDLE_SECONDS=2``) and open again. At each minute's end: the server's RSS and its
own counts from ``/metrics`` (open fds, asyncio tasks, sockets, rooms loaded). At the end
everyone leaves; once the rooms have unloaded and a ping round has passed (python-engineio
keeps a closed socket's ping timer up to 25 s), the fds and tasks must be back at the
baseline read after a warm-up (two rooms join, edit and leave) before the load joined.

Verdict: RSS growth from the end of minute 2 to the end < 5 %, fds and tasks back at the
baseline, no delivery lost, every room converged. Results: ``bench/results/soak-<UTC
time>.json`` (``--out``), ``--markdown PATH`` a page to commit. The shortened version in the
suite is ``tests/process/test_soak.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bench.common import (
    DEFAULT_POSTGRES_URL,
    ThrowawayDatabase,
    git_commit,
    git_dirty,
    machine_info,
    proc_status_kb,
    raise_nofile_limit,
)
from bench.stock import RESULTS, Load, Target, connect, edit_run, start_target

COUNTS = {
    "open_fds": "process_open_fds",
    "asyncio_tasks": "musicplayground_asyncio_tasks",
    "sockets": "musicplayground_sockets_connected",
    "rooms_loaded": "musicplayground_rooms_loaded",
}
PING_INTERVAL_S = 25  # python-engineio's default: a closed socket's ping timer lasts this long
ROOM_IDLE_S = 2.0
MAX_RSS_GROWTH_PCT = 5.0


async def server_counts(target: Target) -> dict[str, int]:
    """Our server's own counts of what could leak, from ``/metrics``."""
    async with aiohttp.ClientSession() as session, session.get(f"{target.url}/metrics") as resp:
        text = await resp.text()
    values = {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples}
    return {name: int(values[metric]) for name, metric in COUNTS.items()}


async def settle(target: Target, timeout: float) -> dict[str, int]:
    """The counts once no socket is connected and no room is loaded (or at ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        counts = await server_counts(target)
        if (counts["sockets"] == 0 and counts["rooms_loaded"] == 0) or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(0.5)


def rss_mb(target: Target) -> float:
    return round((proc_status_kb(target.pid, "VmRSS") or 0) / 1024, 1)


def churn_command(sockets: int, editors: int, fraction: float) -> dict[str, Any]:
    """One worker's share of the churn: ``fraction`` of its sockets, half as single sockets
    and half as whole rooms (at least one room)."""
    total = round(fraction * sockets)
    rooms = max(1, total // 2 // editors)
    return {
        "cmd": "churn",
        "sockets": max(0, total - rooms * editors),
        "rooms": rooms,
        "gap": ROOM_IDLE_S + 1.5,
        "timeout": 30,
    }


async def soak(args: argparse.Namespace, pg: ThrowawayDatabase | None) -> dict[str, Any]:
    target = await start_target(
        f"ours-{args.backend}", args.rooms, pg, server_env={"ROOM_IDLE_SECONDS": str(ROOM_IDLE_S)}
    )
    minutes: list[dict[str, Any]] = []
    result: dict[str, Any] = {"minutes": minutes}
    try:
        # Warm-up: two rooms join, edit and leave (the database pool, lazy imports and the
        # server's first-use tasks), then the baseline, once their ping timers have ended.
        async with Load(target, 2, args.editors, 1) as warm:
            await connect(warm)
            await edit_run(target, warm, 1.0, 0.0, 2.0, scenario_name="warm-up")
        await settle(target, 30)
        await asyncio.sleep(PING_INTERVAL_S + 2)
        baseline = await server_counts(target)
        result["baseline"] = {**baseline, "rss_mb": rss_mb(target)}
        load = Load(target, args.rooms, args.editors, args.workers)
        async with load:
            joined = await connect(load, one_worker_at_a_time=True)
            result["connect"] = joined
            if joined["connect_failed"]:
                result["error"] = f"{joined['connect_failed']} sockets did not connect"
                return result
            per_worker = [len(w.config["rooms"]) * args.editors for w in load.workers]
            for minute in range(args.minutes):
                started = time.monotonic()
                window = await edit_run(target, load, args.rate, 0.0, args.window, scenario_name="soak")
                churned = await asyncio.gather(
                    *(
                        w.call(churn_command(n, args.editors, args.churn))
                        for w, n in zip(load.workers, per_worker, strict=True)
                    )
                )
                rest = args.minute - (time.monotonic() - started)
                if rest > 0:
                    await asyncio.sleep(rest)
                counts = await server_counts(target)
                entry = {
                    "minute": minute + 1,
                    "rss_mb": rss_mb(target),
                    **counts,
                    "latency_ms": window["latency_ms"],
                    "delivered_pairs": window["delivered_pairs"],
                    "lost_pairs": window["lost_pairs"],
                    "duplicates": window["duplicates"],
                    "rooms_converged": window["rooms_converged"],
                    "rooms": window["rooms"],
                    "server_cpu_util": window["server_cpu_util"],
                    "reconnected": sum(c["reconnected"] for c in churned),
                    "rooms_reopened": sum(c["reopened"] for c in churned),
                    "churn_failed": sum(c["failed"] for c in churned),
                }
                minutes.append(entry)
                print(f"  minute {minute + 1}: {json.dumps(entry)}", flush=True)
        left = await settle(target, 60)
        await asyncio.sleep(PING_INTERVAL_S + 2)
        result["after_everyone_left"] = {
            **await server_counts(target),
            "rss_mb": rss_mb(target),
            "unloaded": left,
        }
    finally:
        await target.stop()
    return result


def verdict(result: dict[str, Any]) -> dict[str, Any]:
    minutes = result["minutes"]
    after, baseline = result.get("after_everyone_left"), result.get("baseline")
    reference = minutes[1]["rss_mb"] if len(minutes) >= 2 else None
    growth = (
        round(100 * (minutes[-1]["rss_mb"] - reference) / reference, 2)
        if reference and len(minutes) > 2
        else None
    )
    checks = {
        "rss_growth_after_minute_2_pct": growth,
        "rss_growth_ok": growth is not None and growth < MAX_RSS_GROWTH_PCT,
        "fds_back_to_baseline": bool(after and baseline and after["open_fds"] <= baseline["open_fds"]),
        "tasks_back_to_baseline": bool(
            after and baseline and after["asyncio_tasks"] <= baseline["asyncio_tasks"]
        ),
        "rooms_unloaded": bool(after and after["rooms_loaded"] == 0 and after["sockets"] == 0),
        "lost_pairs": sum(m["lost_pairs"] for m in minutes),
        "rooms_diverged": sum(m["rooms"] - m["rooms_converged"] for m in minutes),
        "churn_failed": sum(m["churn_failed"] for m in minutes),
    }
    checks["passed"] = bool(
        checks["rss_growth_ok"]
        and checks["fds_back_to_baseline"]
        and checks["tasks_back_to_baseline"]
        and checks["rooms_unloaded"]
        and not checks["lost_pairs"]
        and not checks["rooms_diverged"]
        and not checks["churn_failed"]
        and "error" not in result
    )
    return checks


def markdown(report: dict[str, Any]) -> str:
    r, v, config = report["result"], report["verdict"], report["config"]
    lines = [
        f"# Soak, {report['started_at']}",
        "",
        f"`{report['command']}` at {report['git_commit']}{' (dirty)' if report['git_dirty'] else ''}; "
        f"{config['rooms'] * config['editors']} sockets, {config['minutes']} minutes, "
        f"load average {report['machine']['loadavg_at_start']} at start (loaded machine: 2 cores shared "
        "with other work).",
        "",
        "| minute | RSS MB | fds | tasks | sockets | rooms | p50 / p99 ms | delivered | lost | "
        "converged | reconnected | rooms reopened |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in r["minutes"]:
        lat = m["latency_ms"]
        lines.append(
            f"| {m['minute']} | {m['rss_mb']} | {m['open_fds']} | {m['asyncio_tasks']} | {m['sockets']} | "
            f"{m['rooms_loaded']} | {lat['p50']} / {lat['p99']} | {m['delivered_pairs']} | "
            f"{m['lost_pairs']} | "
            f"{m['rooms_converged']}/{m['rooms']} | {m['reconnected']} | {m['rooms_reopened']} |"
        )
    b, a = r.get("baseline", {}), r.get("after_everyone_left", {})
    lines += [
        "",
        f"Baseline after the warm-up, before the load joined: {b.get('open_fds')} fds, "
        f"{b.get('asyncio_tasks')} tasks, RSS {b.get('rss_mb')} MB. "
        f"After everyone left: {a.get('open_fds')} fds, {a.get('asyncio_tasks')} tasks, "
        f"{a.get('sockets')} sockets, "
        f"{a.get('rooms_loaded')} rooms loaded, RSS {a.get('rss_mb')} MB.",
        "",
        "Verdict: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--rooms", type=int, default=250)
    p.add_argument("--editors", type=int, default=4, help="sockets per room")
    p.add_argument("--rate", type=float, default=0.2, help="edits/s per socket")
    p.add_argument("--minutes", type=int, default=10)
    p.add_argument("--minute", type=float, default=60.0, help="seconds per cycle (edit window + churn)")
    p.add_argument("--window", type=float, default=45.0, help="measured edit seconds per cycle")
    p.add_argument("--churn", type=float, default=0.10, help="share of the sockets reconnecting per cycle")
    p.add_argument("--workers", type=int, default=10, help="Node load workers")
    p.add_argument("--out", type=Path)
    p.add_argument("--markdown", type=Path, metavar="PATH")
    args = p.parse_args(argv)
    args.command = shlex.join(["python", "-m", "bench.soak", *(sys.argv[1:] if argv is None else argv)])
    return args


async def amain(args: argparse.Namespace) -> int:
    raise_nofile_limit()
    started = time.time()
    pg = (
        ThrowawayDatabase(os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL))
        if args.backend == "postgres"
        else None
    )
    report: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "command": args.command,
        "git_commit": git_commit(),
        "git_dirty": git_dirty(),
        "machine": machine_info(),
        "config": {k: v for k, v in vars(args).items() if k not in {"out", "markdown", "command"}},
    }
    try:
        if pg is not None:
            await pg.create()
        report["result"] = await soak(args, pg)
    finally:
        if pg is not None:
            await pg.drop()
    report["verdict"] = verdict(report["result"])
    report["elapsed_s"] = round(time.time() - started, 1)
    out = args.out or RESULTS / f"soak-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(started))}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown is not None:
        args.markdown.write_text(markdown(report))
    print(json.dumps(report["verdict"], indent=2))
    print(f"results: {out}" + (f"; markdown: {args.markdown}" if args.markdown else ""))
    return 0 if report["verdict"]["passed"] else 1


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(amain(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
