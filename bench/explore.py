"""Explore and search benchmark: ``GET /api/explore`` over a large public catalogue.

    uv run python -m bench.explore [--backends sqlite,postgres] [--loops 50000]
                                   [--requests 300] [--out bench/results/explore.json]

For each backend it starts a real server process (``musicplayground db upgrade`` +
``serve``, fresh data dir; for Postgres a throwaway database), seeds ``--loops`` public
loops by ``--users`` owners straight into the database (bulk inserts: the HTTP path is
not what is measured; Postgres then gets ``VACUUM ANALYZE``, as autovacuum would), and
then sends ``--requests`` requests per scenario, one at a time, reporting p50/p95/p99:

- ``q``: name searches (``?q=``) for words and fragments (prefix and substring) drawn
  from the name vocabulary, plus a few that match nothing;
- ``sort=recent|views|forks``: the first page of each sort;
- ``keyset``: pages 2-5 of ``sort=views``, following ``nextCursor``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import insert

from bench.common import (
    DEFAULT_POSTGRES_URL,
    Server,
    ThrowawayDatabase,
    fmt,
    git_commit,
    git_dirty,
    latency_summary,
    machine_info,
    print_rows,
)
from storage.database import Database
from storage.models import Loop, User

ADJECTIVES = (
    "funky groovy dark bright lazy rapid mellow heavy dreamy gritty warm cold deep soft loud "
    "sunny rainy electric acoustic lofi chill hyper tiny giant cosmic urban rustic golden velvet"
).split()
NOUNS = (
    "groove beat loop night morning bassline melody riff pulse wave drift echo storm garden "
    "river city dance jam vibe anthem ballad sketch tune pattern cycle motion spark bloom"
).split()
FRAGMENTS = ["groo", "night", "ight", "bass", "elec", "oove", "dream", "cosmic ri", "LOFI"]
MISSES = ["zzqx", "nothing-here", "qwertyuiop"]
BATCH = 2000


def loop_name(rng: random.Random, i: int) -> str:
    return f"{rng.choice(ADJECTIVES).capitalize()} {rng.choice(NOUNS)} {i}"


async def seed(database_url: str, *, loops: int, users: int, rng: random.Random) -> float:
    """Insert ``users`` owners and ``loops`` public loops; the seconds it took."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    async with Database(database_url) as db:
        user_ids = [uuid.uuid4() for _ in range(users)]
        async with db.write_session() as session:
            await session.execute(
                insert(User),
                [
                    {
                        "id": uid,
                        "username": f"bench_{n}",
                        "display_name": f"Bench {n}",
                        "is_anonymous": False,
                        "is_admin": False,
                        "created_at": now,
                        "updated_at": now,
                        "last_seen_at": now,
                    }
                    for n, uid in enumerate(user_ids)
                ],
            )
        for start in range(0, loops, BATCH):
            rows = []
            for i in range(start, min(loops, start + BATCH)):
                created = now - timedelta(seconds=loops - i)
                rows.append(
                    {
                        "id": uuid.uuid4(),
                        "user_id": rng.choice(user_ids),
                        "name": loop_name(rng, i),
                        "length": 4,
                        "bpm": 120,
                        "color": "#FFD11A",
                        "chord_progression": [],
                        "icon_sequence": [],
                        "is_public": rng.random() < 0.9 or i < loops // 2,  # a few private ones
                        "view_count": int(rng.paretovariate(1.2)) - 1,
                        "fork_count": int(rng.paretovariate(2.0)) - 1,
                        "created_at": created,
                        "updated_at": created,
                        "doc_log_position": 0,
                    }
                )
            async with db.write_session() as session:
                await session.execute(insert(Loop), rows)
        if db.dialect == "postgresql":
            async with db.engine.connect() as conn:
                autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await autocommit.exec_driver_sql("VACUUM ANALYZE loops")
                await autocommit.exec_driver_sql("VACUUM ANALYZE users")
    return round(time.perf_counter() - started, 1)


def scenarios(rng: random.Random, requests: int) -> dict[str, list[str]]:
    words = [w for w in ADJECTIVES + NOUNS] + FRAGMENTS
    queries = [rng.choice(words) for _ in range(requests - len(MISSES))] + MISSES
    rng.shuffle(queries)
    plans = {"q": [f"/api/explore?q={q.replace(' ', '%20')}" for q in queries]}
    for sort in ("recent", "views", "forks"):
        plans[f"sort={sort}"] = [f"/api/explore?sort={sort}"] * requests
    return plans


async def timed_get(session: aiohttp.ClientSession, url: str) -> tuple[float, int, Any]:
    started = time.perf_counter()
    async with session.get(url) as resp:
        body = await resp.json()
        status = resp.status
    return time.perf_counter() - started, status, body


async def run_backend(backend: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    rng = random.Random(args.seed)
    throwaway = ThrowawayDatabase(args.postgres_url) if backend == "postgres" else None
    if throwaway is not None:
        await throwaway.create()
    server = Server(backend, throwaway.url if throwaway is not None else None)
    results = []
    try:
        await server.start()
        url = throwaway.url if throwaway is not None else f"sqlite:///{server.sqlite_path}"
        url = url.replace("postgresql://", "postgresql+asyncpg://", 1).replace(
            "sqlite://", "sqlite+aiosqlite://", 1
        )
        print(f"[{backend}] seeding {args.loops} loops by {args.users} users...", flush=True)
        seeded_s = await seed(url, loops=args.loops, users=args.users, rng=rng)
        print(f"[{backend}] seeded in {seeded_s} s", flush=True)
        async with aiohttp.ClientSession(server.base_url) as session:
            for _ in range(20):  # warm-up
                await timed_get(session, "/api/explore?q=groove")
            for name, urls in scenarios(rng, args.requests).items():
                latencies, totals = [], []
                statuses: dict[int, int] = {}
                for path in urls:
                    seconds, status, body = await timed_get(session, path)
                    latencies.append(seconds)
                    statuses[status] = statuses.get(status, 0) + 1
                    totals.append(body.get("total", 0) if status == 200 else 0)
                results.append(
                    {
                        "backend": backend,
                        "scenario": name,
                        "latency_ms": latency_summary(latencies),
                        "statuses": statuses,
                        "median_total": sorted(totals)[len(totals) // 2],
                    }
                )
            keyset, statuses = [], {}
            for _ in range(max(1, args.requests // 4)):
                _, _, page = await timed_get(session, "/api/explore?sort=views")
                for _page in range(4):
                    seconds, status, page = await timed_get(
                        session, f"/api/explore?sort=views&cursor={page['nextCursor']}"
                    )
                    keyset.append(seconds)
                    statuses[status] = statuses.get(status, 0) + 1
            results.append(
                {
                    "backend": backend,
                    "scenario": "keyset (sort=views, pages 2-5)",
                    "latency_ms": latency_summary(keyset),
                    "statuses": statuses,
                    "median_total": None,
                }
            )
        for r in results:
            r["seeded_loops"] = args.loops
            r["seed_seconds"] = seeded_s
    finally:
        await server.stop()
        if throwaway is not None:
            await throwaway.drop()
    return results


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.explore", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--loops", type=int, default=50_000)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--requests", type=int, default=300, help="requests per scenario")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default="bench/results/explore.json")
    args = parser.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if set(args.backends) - {"sqlite", "postgres"} or args.loops < 1 or args.requests < 10:
        parser.error("--backends is sqlite and/or postgres; --loops >= 1; --requests >= 10")
    args.postgres_url = os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    return args


def write_report(out: Path, report: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")


async def amain(args: argparse.Namespace) -> int:
    report: dict[str, Any] = {
        "benchmark": "explore",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git_commit": git_commit(),
        "git_dirty": git_dirty(),
        "machine": machine_info(),
        "config": {k: getattr(args, k) for k in ("backends", "loops", "users", "requests", "seed")},
        "results": [],
    }
    out = Path(args.out)
    try:
        for backend in args.backends:
            report["results"].extend(await run_backend(backend, args))
    finally:
        report["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        write_report(out, report)
    rows = [["backend", "scenario", "p50 ms", "p95 ms", "p99 ms", "max ms", "statuses"]]
    for r in report["results"]:
        lat = r["latency_ms"]
        rows.append(
            [
                r["backend"],
                r["scenario"],
                fmt(lat["p50"]),
                fmt(lat["p95"]),
                fmt(lat["p99"]),
                fmt(lat["max"]),
                json.dumps(r["statuses"]),
            ]
        )
    print_rows(rows, left=2)
    print(f"\nresults written to {out}")
    bad = [r for r in report["results"] if set(r["statuses"]) != {200}]
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    try:
        return asyncio.run(amain(parse_args(argv)))
    except KeyboardInterrupt:
        print("interrupted; server stopped, benchmark database dropped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
