"""Command line of ``python -m bench.realtime``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench.common import (
    DEFAULT_POSTGRES_URL,
    ServerError,
    git_commit,
    git_dirty,
    machine_info,
    raise_nofile_limit,
)
from bench.realtime.presets import ALL_PRESETS, PRESETS, preset_edit, preset_idle, preset_open
from bench.realtime.report import print_report
from bench.realtime.runs import GRACE_S, summarize_py_spy
from bench.realtime.workers import relay_main, worker_main


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
