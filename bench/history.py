"""Version history benchmark: a loop edited 10,000 times by 3 people, then its history read.

Per backend (a real ``musicplayground serve``): three accounts (the owner and two editors)
edit one loop of the composer's shapes live (the Python Yjs client of ``loadtest``), each
edit one step toggled, one chord set or one field changed, with automatic versions made
about every ``--version-every`` seconds of editing (``HISTORY_VERSION_INTERVAL_SECONDS``,
compressed from a day's 300 s), and kept edits packed into compressed chunks once older than
that interval too (``HISTORY_PACK_AFTER_SECONDS``, compressed from a day's hour). Then it
measures:

- bytes: the snapshot (the row's Yjs state) against the kept history (updates, one row each
  or packed), the versions (count, bytes each) and the base;
- REST latency, sequential requests: list versions, time travel to a random instant, compare
  a random version with now, restore a random version (each a real new edit).

    uv run python -m bench.history                       # both databases, 10,000 edits
    uv run python -m bench.history --backends sqlite --edits 2000   # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from pycrdt import Map

from bench.common import (
    DEFAULT_POSTGRES_URL,
    Server,
    ThrowawayDatabase,
    anonymous_token,
    fmt,
    git_commit,
    git_dirty,
    latency_summary,
    loop_payload,
    machine_info,
    print_rows,
)
from loadtest.client import CollabClient
from music.schema import step_key

# The composer's sequencer (tests/fixtures/composer-localstorage.json): four rows, one sound
# and pitch each; a 2-bar loop has 32 sixteenth steps, so at most 128 cells.
ROWS = (("drum-kick", 36), ("drum-snare", 38), ("synth-pluck", 70), ("pad-warm", 60))
STEPS = 32
CHORDS = ("C", "G", "Am", "F", "Dm", "Em", "E7", "Bb")
TARGETS_MS = {"list versions": 50, "time travel": 200, "compare": 200, "restore": 300}


async def user(session: aiohttp.ClientSession, name: str) -> tuple[str, dict[str, str]]:
    token = await anonymous_token(session, "")
    headers = {"Authorization": f"Bearer {token}"}
    async with session.patch("/api/users/me", json={"username": name}, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
    return token, headers


def edit(client: CollabClient, rng: random.Random) -> None:
    """One edit of the composer's kinds: a step toggled (most), a chord set, a field changed."""
    roll = rng.random()
    if roll < 0.75:
        steps = client.doc.get("steps", type=Map)
        row = rng.randrange(len(ROWS))
        sound, pitch = ROWS[row]
        step = {"step": rng.randrange(STEPS), "soundId": sound, "velocity": 0.8, "row": row, "pitch": pitch}
        key = step_key(step)
        if key in steps:
            del steps[key]
        else:
            steps[key] = Map(step)
    elif roll < 0.95:
        client.doc.get("chords", type=Map)[str(rng.randrange(8))] = {"chord": rng.choice(CHORDS)}
    else:
        meta = client.doc.get("meta", type=Map)
        field = rng.choice(("bpm", "name", "color"))
        meta[field] = (
            rng.randint(80, 140)
            if field == "bpm"
            else f"Take {rng.randrange(1000)}"
            if field == "name"
            else f"#{rng.randrange(0x1000000):06X}"
        )


async def editor(client: CollabClient, edits: int, rng: random.Random, pause: float) -> None:
    for _ in range(edits):
        edit(client, rng)
        await asyncio.sleep(pause)


class Sizes:
    """Byte counts read straight from the database."""

    def __init__(self, backend: str, server: Server, throwaway: ThrowawayDatabase | None) -> None:
        self.backend, self.server, self.throwaway = backend, server, throwaway

    async def one(self, query: str, doc_id: str) -> tuple[Any, ...]:
        if self.throwaway is not None:
            import asyncpg

            conn = await asyncpg.connect(self.throwaway.url)
            try:
                row = await conn.fetchrow(query.replace("?", "$1"), uuid.UUID(doc_id))
            finally:
                await conn.close()
            return tuple(row)
        with sqlite3.connect(self.server.sqlite_path) as conn:
            return tuple(conn.execute(query, (uuid.UUID(doc_id).hex,)).fetchone())

    async def measure(self, doc_id: str) -> dict[str, Any]:
        (snapshot,) = await self.one("SELECT length(doc_state) FROM loops WHERE id = ?", doc_id)
        kept_n, kept_b = await self.one(
            "SELECT count(*), coalesce(sum(length(data)), 0) FROM document_history WHERE resource_id = ?",
            doc_id,
        )
        log_n, log_b = await self.one(
            "SELECT count(*), coalesce(sum(length(data)), 0) FROM document_updates WHERE resource_id = ?",
            doc_id,
        )
        packed_n, packed_b = await self.one(
            "SELECT coalesce(sum(entries), 0), coalesce(sum(length(data)), 0)"
            " FROM document_history_chunks WHERE resource_id = ?",
            doc_id,
        )
        versions_n, versions_b = await self.one(
            "SELECT count(*), coalesce(sum(length(content) + coalesce(length(state), 0)), 0)"
            " FROM document_versions WHERE resource_id = ?",
            doc_id,
        )
        (base,) = await self.one(
            "SELECT coalesce(length(base_state), 0) FROM document_history_settings WHERE resource_id = ?",
            doc_id,
        )
        total = int(kept_b) + int(log_b) + int(packed_b) + int(versions_b) + int(base or 0)
        return {
            "snapshot_bytes": int(snapshot),
            "kept_updates": int(kept_n) + int(log_n) + int(packed_n),
            "kept_update_bytes": int(kept_b) + int(log_b) + int(packed_b),
            "packed_updates": int(packed_n),
            "packed_bytes": int(packed_b),
            "versions": int(versions_n),
            "version_bytes_total": int(versions_b),
            "bytes_per_version": round(int(versions_b) / int(versions_n)) if versions_n else None,
            "base_bytes": int(base or 0),
            "history_bytes_total": total,
            "history_vs_snapshot": round(total / int(snapshot), 1),
        }


async def timed(
    session: aiohttp.ClientSession, method: str, path: str, headers: dict[str, str], **kw: Any
) -> tuple[float, int, Any]:
    started = time.perf_counter()
    async with session.request(method, path, headers=headers, **kw) as resp:
        body = await resp.json()
        return time.perf_counter() - started, resp.status, body


async def run_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    throwaway = ThrowawayDatabase(args.postgres_url) if backend == "postgres" else None
    if throwaway is not None:
        await throwaway.create()
    server = Server(
        backend,
        throwaway.url if throwaway is not None else None,
        extra_env={
            "SNAPSHOT_INTERVAL_SECONDS": str(args.version_every / 2),
            "HISTORY_VERSION_INTERVAL_SECONDS": str(args.version_every),
            "HISTORY_MAX_VERSIONS": "1000",
            "HISTORY_PACK_AFTER_SECONDS": str(args.version_every),
            "RT_MAX_CLIENTS_PER_ROOM": "64",
        },
    )
    try:
        await server.start()
        async with aiohttp.ClientSession(server.base_url) as session:
            owner_token, owner = await user(session, f"owner{rng.randrange(10**6)}")
            others = [await user(session, f"editor{i}{rng.randrange(10**6)}") for i in range(2)]
            async with session.post("/api/loops", json=loop_payload(0, rng), headers=owner) as resp:
                doc_id = str((await resp.json())["id"])
            for _token, headers in others:
                me = await (await session.get("/api/users/me", headers=headers)).json()
                async with session.post(
                    f"/api/loops/{doc_id}/collaborators",
                    json={"username": me["username"], "role": "editor"},
                    headers=owner,
                ) as resp:
                    assert resp.status == 201, await resp.text()
            clients = [
                CollabClient(server.base_url, "loop", doc_id, token=t)
                for t in [owner_token, *[o[0] for o in others]]
            ]
            for client in clients:
                await client.connect()
            started_at = datetime.now(UTC)
            started = time.perf_counter()
            per = args.edits // len(clients)
            pause = args.seed_seconds / per
            print(
                f"[{backend}] {per * len(clients)} edits by {len(clients)} people, ~{args.seed_seconds} s",
                flush=True,
            )
            await asyncio.gather(
                *(editor(c, per, random.Random(args.seed + i), pause) for i, c in enumerate(clients))
            )
            await asyncio.sleep(args.version_every * 2)  # the last folds, and the version after the burst
            for client in clients:
                await client.close()
            await asyncio.sleep(1.0)
            seeded_s = round(time.perf_counter() - started, 1)
            ended_at = datetime.now(UTC)
            sizes = await Sizes(backend, server, throwaway).measure(doc_id)
            print(f"[{backend}] seeded in {seeded_s} s: {json.dumps(sizes)}", flush=True)

            base = f"/api/loops/{doc_id}"
            _, _, listed = await timed(session, "GET", f"{base}/versions", owner)
            version_ids = [v["id"] for v in listed["versions"]]
            span = (ended_at - started_at).total_seconds()
            scenarios: dict[str, list[tuple[str, str, dict[str, Any]]]] = {
                "list versions": [("GET", f"{base}/versions", {})] * args.requests,
                "time travel": [
                    (
                        "GET",
                        f"{base}/versions/at",
                        {
                            "params": {
                                "t": datetime.fromtimestamp(
                                    started_at.timestamp() + rng.random() * span, UTC
                                ).isoformat()
                            }
                        },
                    )
                    for _ in range(args.requests)
                ],
                "compare": [
                    ("GET", f"{base}/compare", {"params": {"from": rng.choice(version_ids), "to": "now"}})
                    for _ in range(args.requests)
                ],
                "restore": [
                    ("POST", f"{base}/versions/{rng.choice(version_ids)}/restore", {})
                    for _ in range(max(10, args.requests // 4))
                ],
            }
            results = []
            for name, requests in scenarios.items():
                for method, path, kw in requests[:5]:  # warm-up
                    await timed(session, method, path, owner, **kw)
                latencies: list[float] = []
                statuses: dict[int, int] = {}
                for method, path, kw in requests:
                    seconds, status, _body = await timed(session, method, path, owner, **kw)
                    latencies.append(seconds)
                    statuses[status] = statuses.get(status, 0) + 1
                results.append(
                    {"scenario": name, "latency_ms": latency_summary(latencies), "statuses": statuses}
                )
        return {"backend": backend, "seed_seconds": seeded_s, "sizes": sizes, "results": results}
    finally:
        await server.stop()
        if throwaway is not None:
            await throwaway.drop()


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Version history benchmark, {report['started_at']}",
        "",
        "`uv run python -m bench.history` "
        f"({report['config']['edits']} edits by 3 people over ~{report['config']['seed_seconds']} s, "
        f"an automatic version every ~{report['config']['version_every']} s of editing; commit "
        f"`{report['git_commit']}`{' + local changes' if report['git_dirty'] else ''}).",
        "",
        "Loaded machine: 2 cores shared by five engineers building in parallel; the load client",
        "runs on the same machine. Read the figures as orders of magnitude, not as a baseline.",
        "",
        "## Bytes",
        "",
        "| backend | snapshot | kept updates (count / bytes) | of which packed (count / bytes) "
        "| versions (count / bytes each) | base | history total | x snapshot |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in report["runs"]:
        s = run["sizes"]
        lines.append(
            f"| {run['backend']} | {s['snapshot_bytes']:,} "
            f"| {s['kept_updates']:,} / {s['kept_update_bytes']:,} "
            f"| {s['packed_updates']:,} / {s['packed_bytes']:,} "
            f"| {s['versions']} / {s['bytes_per_version'] or 0:,} | {s['base_bytes']:,} "
            f"| {s['history_bytes_total']:,} | {s['history_vs_snapshot']} |"
        )
    lines += [
        "",
        "## REST latency (sequential requests, ms)",
        "",
        "| backend | scenario | p50 | p95 | p99 | target p95 | statuses |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in report["runs"]:
        for r in run["results"]:
            lat = r["latency_ms"]
            lines.append(
                f"| {run['backend']} | {r['scenario']} | {fmt(lat['p50'])} | {fmt(lat['p95'])} "
                f"| {fmt(lat['p99'])} | < {TARGETS_MS[r['scenario']]} | {json.dumps(r['statuses'])} |"
            )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.history", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--edits", type=int, default=10_000)
    parser.add_argument("--seed-seconds", type=float, default=40.0, help="how long the editing lasts")
    parser.add_argument("--version-every", type=float, default=0.5, help="HISTORY_VERSION_INTERVAL_SECONDS")
    parser.add_argument("--requests", type=int, default=100, help="requests per scenario")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default="bench/results/history.json")
    parser.add_argument("--markdown", default=None, help="also write the run as a markdown page here")
    args = parser.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if set(args.backends) - {"sqlite", "postgres"} or args.edits < 30 or args.requests < 10:
        parser.error("--backends is sqlite and/or postgres; --edits >= 30; --requests >= 10")
    args.postgres_url = os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    return args


def write_files(report: dict[str, Any], page: str, out: Path, page_path: Path | None) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    if page_path is not None:
        page_path.write_text(page)


async def amain(args: argparse.Namespace) -> int:
    report: dict[str, Any] = {
        "benchmark": "history",
        "started_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "git_commit": git_commit(),
        "git_dirty": git_dirty(),
        "machine": machine_info(),
        "config": {
            k: getattr(args, k)
            for k in ("backends", "edits", "seed_seconds", "version_every", "requests", "seed")
        },
        "runs": [],
    }
    for backend in args.backends:
        report["runs"].append(await run_backend(backend, args))
    page = markdown(report)
    write_files(report, page, Path(args.out), Path(args.markdown) if args.markdown else None)
    print(page)
    rows = [["backend", "scenario", "p50 ms", "p95 ms", "statuses"]]
    for run in report["runs"]:
        for r in run["results"]:
            rows.append(
                [
                    run["backend"],
                    r["scenario"],
                    fmt(r["latency_ms"]["p50"]),
                    fmt(r["latency_ms"]["p95"]),
                    json.dumps(r["statuses"]),
                ]
            )
    print_rows(rows, left=2)
    bad = [r for run in report["runs"] for r in run["results"] if set(r["statuses"]) != {200}]
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    try:
        return asyncio.run(amain(parse_args(argv)))
    except KeyboardInterrupt:
        print("interrupted; server stopped, benchmark database dropped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
