"""Events out: what the outbox adds to a REST mutation, and webhook delivery throughput.

    uv run python -m bench.events                     # sqlite + postgres
    uv run python -m bench.events --backends sqlite --samples 200 --events 1000

1. **Outbox write cost.** The transaction of ``POST /api/loops/{id}/comments`` (the same
   storage call the handler makes, in a write session) is run ``--samples`` times without
   and with its ``outbox.record`` call, alternating, after a warm-up. Reported: p50/p99 of
   each and the p50 of the ``record`` call itself, timed inside the transaction (the figure
   the target is about: p50 added < 1 ms).
2. **Delivery throughput.** ``--events`` events are written to the outbox with one webhook
   endpoint configured; then the dispatcher and the webhook sender start, and the time until
   a receiver in another process (aiohttp, loopback, 204) has all of them gives events/s
   (fan-out, signing, POST, recording each outcome; target >= 500/s).

Writes ``bench/results/events.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, web
from sqlalchemy import func, select

from bench.common import ThrowawayDatabase, free_port, latency_summary, machine_info
from events import outbox, webhooks
from events.dispatcher import Dispatcher
from events.webhook_urls import UrlRules
from events.webhooks import WebhookSender
from storage import comments
from storage.database import Database
from storage.models import Loop, User, WebhookDelivery, utcnow
from storage.schema import upgrade

RESULTS = Path(__file__).parent / "results"
LOOPBACK = UrlRules(require_https=False, allow_private=True)


def _receiver(port: int) -> None:
    count = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal count
        await request.read()
        count += 1
        return web.Response(status=204)

    async def seen(request: web.Request) -> web.Response:
        return web.json_response({"count": count})

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/count", seen)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def _seed(db: Database) -> tuple[uuid.UUID, Loop]:
    async with db.write_session() as session:
        user = User(is_anonymous=True)
        session.add(user)
        await session.flush()
        loop = Loop(
            user_id=user.id, name="bench", length=4, color="#FFD11A", chord_progression=[], icon_sequence=[]
        )
        session.add(loop)
        await session.flush()
        return user.id, loop


async def outbox_cost(db: Database, samples: int) -> dict[str, Any]:
    user_id, loop = await _seed(db)
    plain: list[float] = []
    with_event: list[float] = []
    record_only: list[float] = []
    for i in range(samples + samples // 10):  # the first tenth warms up
        for recorded in (False, True) if i % 2 else (True, False):
            started = time.perf_counter()
            async with db.write_session() as session:
                comment = await comments.create_comment(
                    session,
                    resource_type="loop",
                    resource_id=loop.id,
                    author_id=user_id,
                    body="hi",
                    anchor=None,
                )
                if recorded:
                    before = time.perf_counter()
                    await outbox.record(
                        session,
                        "loop.comment_created",
                        {"loop": outbox.document_ref(loop), "comment": {"id": str(comment.id), "body": "hi"}},
                        actor_id=user_id,
                        document=loop,
                    )
                    spent = time.perf_counter() - before
            total = time.perf_counter() - started
            if i >= samples // 10:
                (with_event if recorded else plain).append(total)
                if recorded:
                    record_only.append(spent)
    return {
        "without_event_ms": latency_summary(plain),
        "with_event_ms": latency_summary(with_event),
        "record_call_ms": latency_summary(record_only),
        "p50_added_ms": round((statistics.median(with_event) - statistics.median(plain)) * 1000, 3),
    }


async def delivery_throughput(db: Database, count: int) -> dict[str, Any]:
    port = free_port()
    process = multiprocessing.get_context("spawn").Process(target=_receiver, args=(port,), daemon=True)
    process.start()
    try:
        async with ClientSession() as http:
            for _ in range(100):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/count") as resp:
                        if resp.status == 200:
                            break
                except OSError:
                    await asyncio.sleep(0.1)
            user_id, loop = await _seed(db)
            async with db.write_session() as session:
                await webhooks.add_endpoint(
                    session, url=f"http://127.0.0.1:{port}/hook", kinds=[], rules=LOOPBACK
                )
            for start in range(0, count, 200):
                async with db.write_session() as session:
                    for _ in range(min(200, count - start)):
                        await outbox.record(
                            session,
                            "loop.content_changed",
                            {"loop": outbox.document_ref(loop)},
                            actor_id=user_id,
                        )
            sender = WebhookSender(
                db, rules=LOOPBACK, schedule=(1.0,), timeout=10, disable_after=3600, poll_interval=0.05
            )
            dispatcher = Dispatcher(db, sender, admin_ids=frozenset(), poll_interval=0.05, retention_days=30)
            started = time.perf_counter()
            async with sender, dispatcher:
                while True:
                    async with http.get(f"http://127.0.0.1:{port}/count") as resp:
                        received = (await resp.json())["count"]
                    if received >= count:
                        break
                    await asyncio.sleep(0.02)
                elapsed = time.perf_counter() - started
                async with db.session() as session:
                    recorded_done = await session.scalar(
                        select(func.count()).where(WebhookDelivery.status == webhooks.DELIVERED)
                    )
    finally:
        process.terminate()
        process.join(5)
    return {
        "events": count,
        "seconds": round(elapsed, 3),
        "events_per_second": round(count / elapsed, 1),
        "outcomes_recorded_when_all_received": int(recorded_done or 0),
    }


async def run_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    throwaway = None
    with tempfile.TemporaryDirectory() as tmp:
        if backend == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp}/bench.sqlite3"
        else:
            throwaway = ThrowawayDatabase(args.postgres_url)
            await throwaway.create()
            url = throwaway.url.replace("postgresql://", "postgresql+asyncpg://", 1)
        try:
            async with Database(url) as db:
                await upgrade(db)
                cost = await outbox_cost(db, args.samples)
                throughput = await delivery_throughput(db, args.events)
        finally:
            if throwaway is not None:
                await throwaway.drop()
    return {"outbox": cost, "delivery": throughput}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--out", type=Path, default=RESULTS / "events.json")
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": machine_info(), "at": utcnow().isoformat(), "backends": {}}
    for backend in args.backends.split(","):
        results["backends"][backend] = asyncio.run(run_backend(backend, args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(
        "| backend | commit p50 without / with event (ms) | record() p50 (ms) | p50 added (ms) | events/s |"
    )
    print("|---|---|---|---|---|")
    for backend, r in results["backends"].items():
        o, d = r["outbox"], r["delivery"]
        print(
            f"| {backend} | {o['without_event_ms']['p50']} / {o['with_event_ms']['p50']} | "
            f"{o['record_call_ms']['p50']} | {o['p50_added_ms']} | {d['events_per_second']} |"
        )


if __name__ == "__main__":
    main()
