"""Costly requests (issue 25, findings 4, 6 and 11), on SQLite and Postgres: what a request may
cost is bounded and charged before the work, and tampered input is a 400, never a 500."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from music.bounds import MAX_CHORD_CELLS, MAX_STEPS
from pages.markup import MAX_LANES
from rest.context import REST_CONTEXT
from rest.cpu_worker import CPU_WORKER
from rest.page_cache import PAGE_CACHE
from settings import Settings
from storage.explore import MAX_COUNT
from storage.models import Loop, MigrationRun
from tests.community import account, create_document
from tests.helpers import LOOP, expect_error, samples
from tests.hostile.conftest import HealthyDuring
from tests.server_process import ServerProcess
from tests.sharing_helpers import share

MAX_LOOPS = 2000  # the most a migration may carry (rest.community_schemas.MAX_MIGRATE_LOOPS)
HEALTHZ_P99 = 0.050  # seconds: the bound of issue 25 while five maximal migrations run


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Room for a maximal migration to be accepted, so that it does all of its work; a page
    # cache that holds two pages of a loop at its bounds, not three.
    return settings.replace(max_loops_per_user=MAX_LOOPS, page_cache_bytes=2 * 250_000)


# --- 4. migrations: charged first, converted off the event loop ----------------------------------


def maximal_migration(settings: Settings) -> bytes:
    """2,000 valid loops (with their own local ids), with as many steps as the body limit allows."""
    body = b""
    for count in range(64):
        steps = [{"bar": i, "soundId": "drum-kick", "row": i % 4} for i in range(count)]
        loops = {f"local-{i:04d}": {**LOOP, "iconSequence": steps} for i in range(MAX_LOOPS)}
        grown = json.dumps({"loops": loops}, separators=(",", ":")).encode()
        if len(grown) > settings.max_json_body_bytes:
            break
        body = grown
    assert len(body) > settings.max_json_body_bytes * 0.8
    return body


@pytest.mark.timeout(300)  # ten seconds of the worker's CPU, which yields to anything else on a busy box
async def test_five_maximal_migrations_never_hold_the_event_loop(
    client: TestClient, settings: Settings, healthy_during: HealthyDuring
) -> None:
    body = maximal_migration(settings)
    accounts = [await account(client) for _ in range(5)]

    async def migrate(who: dict[str, Any]) -> Any:
        headers = {**who["headers"], "Content-Type": "application/json"}
        resp = await client.post("/api/migrate", data=body, headers=headers)
        assert resp.status == 200, await resp.text()
        return await resp.json()

    async with healthy_during() as health:
        results = await asyncio.gather(*(migrate(who) for who in accounts))
    assert [r["loops"]["created"] for r in results] == [MAX_LOOPS] * 5
    p99 = health.quantile(0.99)
    assert p99 < HEALTHZ_P99, f"/healthz p99 {p99 * 1000:.1f} ms over {len(health.latencies)} answers"


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc)."""
    children: dict[int, set[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):  # gone meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "(command name)": state, ppid, ...
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), set()).add(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.add(child)
            todo.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    return {pid for pid in pids if Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)}


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return "Z"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("stop", ["terminate", "kill"])
def test_the_migration_worker_goes_with_its_server(tmp_path: Path, stop: str) -> None:
    with ServerProcess({"DATA_DIR": str(tmp_path / "data")}, log_path=tmp_path / "server.log") as server:
        assert server.proc is not None
        token = requests.post(f"{server.url}/api/auth/anonymous", timeout=5).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        resp = requests.post(
            f"{server.url}/api/migrate", json={"loops": {"a": LOOP}}, headers=headers, timeout=60
        )
        assert resp.status_code == 200, resp.text
        workers = descendants(server.proc.pid)
        assert workers, "the migration ran in no worker process"
        getattr(server, stop)()
    deadline = time.monotonic() + 30
    while alive(workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(workers), f"left behind: {alive(workers)}\n{server.log()[-2000:]}"


async def runs_of(client: TestClient, user_id: str) -> list[tuple[int, int]]:
    """The migration runs charged to an account: (loops created, songs created) each."""
    async with client.app[REST_CONTEXT].db.session() as session:
        rows = await session.execute(
            select(MigrationRun.loops_created, MigrationRun.songs_created).where(
                MigrationRun.user_id == uuid.UUID(user_id)
            )
        )
        return [(loops, songs) for loops, songs in rows]


async def loops_of(client: TestClient, user_id: str) -> int:
    async with client.app[REST_CONTEXT].db.session() as session:
        count = await session.scalar(
            select(func.count()).select_from(Loop).where(Loop.user_id == uuid.UUID(user_id))
        )
    return int(count or 0)


async def test_a_refused_migration_run_is_charged_before_its_work(client: TestClient) -> None:
    who = await account(client)
    user_id = who["user"]["id"]
    await create_document(client, who)  # one loop: 2,000 more are over the quota
    worker = client.app[CPU_WORKER]
    over = {"loops": {f"over-{i}": LOOP for i in range(MAX_LOOPS)}}
    resp = await client.post("/api/migrate", json=over, headers=who["headers"])
    body = await expect_error(resp, 403, "quota_exceeded")
    assert "counts against the hourly migration limit" in body["error"]
    assert body["details"] == [{"kind": "loop", "quota": MAX_LOOPS, "existing": 1, "requested": MAX_LOOPS}]
    # Charged, and nothing created.
    assert await runs_of(client, user_id) == [(0, 0)]
    assert await loops_of(client, user_id) == 1
    # So the next run of new work this hour is refused before anything is validated or built.
    built = worker.calls["build"]
    resp = await client.post("/api/migrate", json={"loops": {"small": LOOP}}, headers=who["headers"])
    await expect_error(resp, 429, "rate_limited")
    assert worker.calls["build"] == built
    assert await runs_of(client, user_id) == [(0, 0)]  # a 429 is not a run
    assert await loops_of(client, user_id) == 1


async def test_only_runs_of_new_work_are_charged(client: TestClient) -> None:
    who = await account(client)
    user_id = who["user"]["id"]
    payload = {"loops": {"a": LOOP, "b": {**LOOP, "length": 3}}}  # "b" fails validation
    first = await client.post("/api/migrate", json=payload, headers=who["headers"])
    assert first.status == 200
    assert (await first.json())["loops"] == {"created": 1, "failed": 1, "alreadyMigrated": 0}
    assert await runs_of(client, user_id) == [(1, 0)]
    # Re-sending what was migrated is answered, free, as often as the client likes.
    built = client.app[CPU_WORKER].calls["build"]
    for _ in range(3):
        again = await client.post("/api/migrate", json={"loops": {"a": LOOP}}, headers=who["headers"])
        assert again.status == 200
        assert (await again.json())["loops"] == {"created": 0, "failed": 0, "alreadyMigrated": 1}
    assert client.app[CPU_WORKER].calls["build"] == built
    assert await runs_of(client, user_id) == [(1, 0)]
    # A run that fails every item still names new work: it is charged (the hour is spent).
    resp = await client.post("/api/migrate", json=payload, headers=who["headers"])
    await expect_error(resp, 429, "rate_limited")


# --- 6. public pages and explore: bounded cost per request -----------------------------------

PAGE_BYTES = 300_000  # the HTML of a loop at its bounds (a later issue's bound)


def maximal_loop(**fields: Any) -> dict[str, Any]:
    """A loop at its bounds: 2,048 steps, each its own sound (so its own lane: the tallest
    grid), every chord cell, the longest name."""
    steps = [
        {"step": i % 64, "soundId": f"sound-{i:04d}", "velocity": (i % 5) / 4, "note": "C4"}
        for i in range(MAX_STEPS)
    ]
    # A chord on every beat of 8 bars (chord positions are beats: docs/musical-time.md).
    beats = min(MAX_CHORD_CELLS, 8 * 4)
    chords = [{"bar": bar, "chord": f"C{bar:02d}maj7 add9 sus2"[:20]} for bar in range(beats)]
    return {
        **LOOP,
        "name": "N" * 100,
        "length": 8,
        "chordProgression": chords,
        "iconSequence": steps,
        **fields,
    }


def drawn_steps(page: bytes) -> int:
    """The grid's step rectangles (inside its lanes' ``<g class="steps">`` groups)."""
    return sum(group.split(b"</g>")[0].count(b"<rect") for group in page.split(b'<g class="steps"')[1:])


async def page_counters(client: TestClient) -> tuple[float, float]:
    """(pages answered without rendering, pages rendered), from /metrics."""
    found = samples(await (await client.get("/metrics")).text())
    labels = (("cache", "public_pages"),)
    return found[("musicplayground_cache_hits_total", labels)], found[
        ("musicplayground_cache_misses_total", labels)
    ]


async def test_a_page_at_the_bounds_is_compact_and_rendered_once_per_version(client: TestClient) -> None:
    who = await account(client)
    loop = await create_document(client, who, **maximal_loop())
    link = await share(client, "loops", loop["id"], who["token"])
    token = link["shareToken"]
    await client.get(f"/loop/{token}")  # this client's view, counted and written now:
    await client.app[REST_CONTEXT].views.flush()  # its later visits do not change the page
    for path in (f"/loop/{token}", f"/embed/{token}"):
        hits, renders = await page_counters(client)
        first = await client.get(path)
        page = await first.read()
        assert first.status == 200 and len(page) <= PAGE_BYTES, len(page)
        assert drawn_steps(page) == MAX_STEPS and f'data-lanes="{MAX_LANES}"'.encode() in page
        again = await client.get(path)
        assert again.status == 200 and await again.read() == page
        assert again.headers["ETag"] == first.headers["ETag"]
        revalidated = await client.get(path, headers={"If-None-Match": first.headers["ETag"]})
        assert revalidated.status == 304 and await revalidated.read() == b""
        # One render for three requests: the second came from the cache, the 304 rendered nothing.
        assert await page_counters(client) == (hits + 2, renders + 1)
    # An edit is a new version of the page: a new ETag, rendered once more.
    resp = await client.patch(f"/api/loops/{loop['id']}", json={"name": "edited"}, headers=who["headers"])
    assert resp.status == 200
    hits, renders = await page_counters(client)
    changed = await client.get(f"/loop/{token}", headers={"If-None-Match": first.headers["ETag"]})
    assert changed.status == 200 and b"edited" in await changed.read()
    assert await page_counters(client) == (hits, renders + 1)


async def test_the_page_cache_is_bounded_by_bytes(client: TestClient) -> None:
    pages = client.app[PAGE_CACHE]
    who = await account(client)
    tokens = []
    for i in range(3):
        loop = await create_document(client, who, **maximal_loop(name=f"loop {i}"))
        tokens.append((await share(client, "loops", loop["id"], who["token"]))["shareToken"])
    for token in tokens:  # each page once: written now, later visits change nothing
        assert (await client.get(f"/loop/{token}")).status == 200
    await client.app[REST_CONTEXT].views.flush()
    _, renders = await page_counters(client)
    sizes = set()
    for token in tokens * 2:  # three pages in turn through a cache that holds two
        sizes.add(len(await (await client.get(f"/loop/{token}")).read()))
        assert 0 < pages.size <= pages.max_bytes
    assert max(sizes) * 2 <= pages.max_bytes < max(sizes) * 3
    # The least recently used page is always the one asked for next: each is rendered again.
    assert (await page_counters(client))[1] == renders + 6


async def copies(client: TestClient, original: dict[str, Any], count: int) -> list[str]:
    """``count`` more rows like the loop ``original`` (straight in the database: 100 loops at
    their bounds through REST would cost the test minutes), newest last."""
    async with client.app[REST_CONTEXT].db.write_session() as session:
        row = await session.get(Loop, uuid.UUID(original["id"]))
        assert row is not None
        values = {c.key: getattr(row, c.key) for c in Loop.__table__.columns if c.key != "id"}
        made = []
        for i in range(count):
            moment = row.created_at + timedelta(seconds=i + 1)
            made.append(Loop(**{**values, "id": uuid.uuid4(), "created_at": moment, "updated_at": moment}))
        session.add_all(made)
    return [str(loop.id) for loop in made]


SUMMARY_BYTES = 1024  # what an item without content may take, owner included


@pytest.mark.parametrize("route", ["explore", "loops"])
async def test_a_page_of_content_stays_within_its_budget(
    client: TestClient, settings: Settings, route: str
) -> None:
    who = await account(client, username=f"u{uuid.uuid4().hex[:10]}")
    first = await create_document(client, who, **maximal_loop(isPublic=True))
    await copies(client, first, 99)
    if route == "explore":
        resp = await client.get("/api/explore?include=content&limit=100")
    else:
        resp = await client.get("/api/loops?include=content&limit=100", headers=who["headers"])
    body = await resp.read()
    assert resp.status == 200
    budget = settings.list_content_budget_bytes
    assert len(body) <= budget + 100 * SUMMARY_BYTES, len(body)
    page = json.loads(body)
    items = page["items"] if route == "explore" else page["loops"]
    assert len(items) == 100 and page["total"] == 100 and page["hasMore"] is False
    # The first items carry their whole content, in page order; the rest are marked.
    whole = [i for i, item in enumerate(items) if "iconSequence" in item]
    assert whole == list(range(len(whole))) and 1 <= len(whole) < 100
    assert all(len(items[i]["iconSequence"]) == MAX_STEPS for i in whole)
    assert all(len(items[i]["chordProgression"]) == len(maximal_loop()["chordProgression"]) for i in whole)
    assert all(item.get("contentOmitted") is True for item in items[len(whole) :])
    assert not any("contentOmitted" in items[i] for i in whole)
    # What was left out is one GET away.
    omitted = items[len(whole)]
    full = await client.get(f"/api/loops/{omitted['id']}")
    assert full.status == 200 and len((await full.json())["iconSequence"]) == MAX_STEPS


async def test_small_documents_all_come_with_their_content(client: TestClient) -> None:
    who = await account(client)
    first = await create_document(client, who, isPublic=True)
    await copies(client, first, 99)
    page = await (await client.get("/api/explore?include=content&limit=100")).json()
    assert len(page["items"]) == 100
    assert all(item["iconSequence"] == first["iconSequence"] for item in page["items"])
    assert not any("contentOmitted" in item for item in page["items"])


# --- 11. tampered explore cursors ---------------------------------------------------------------


def raw_cursor(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def cursor(*parts: Any) -> str:
    """A cursor as the server encodes one (``rest.explore.encode_cursor``), with any content."""
    return raw_cursor(json.dumps(list(parts)).encode())


SOME_ID = "00000000-0000-4000-8000-000000000000"
TAMPERED = {
    "views-2^63": ("views", cursor("loop", "views", 2**63, SOME_ID)),
    "views-2^31": ("views", cursor("loop", "views", 2**31, SOME_ID)),
    "views-negative": ("views", cursor("loop", "views", -1, SOME_ID)),
    "views-float": ("views", cursor("loop", "views", 1.5, SOME_ID)),
    "views-bool": ("views", cursor("loop", "views", True, SOME_ID)),
    "views-huge-literal": ("views", raw_cursor(b'["loop","views",' + b"9" * 120 + b',"x"]')),
    "forks-string": ("forks", cursor("loop", "forks", "12", SOME_ID)),
    "time-past-9999-in-utc": ("recent", cursor("loop", "recent", "9999-12-31T23:59:59-14:00", SOME_ID)),
    "time-before-year-1-in-utc": ("recent", cursor("loop", "recent", "0001-01-01T00:00:00+14:00", SOME_ID)),
    "time-not-iso": ("recent", cursor("loop", "recent", "yesterday", SOME_ID)),
    "time-a-number": ("recent", cursor("loop", "recent", 1700000000, SOME_ID)),
    "id-a-number": ("views", cursor("loop", "views", 3, 12345)),
    "id-null": ("views", cursor("loop", "views", 3, None)),
    "id-a-list": ("views", cursor("loop", "views", 3, [SOME_ID])),
    "id-not-a-uuid": ("views", cursor("loop", "views", 3, "not-a-uuid")),
    "an-object": ("views", raw_cursor(json.dumps({"a": 1, "b": 2, "c": 3, "d": 4}).encode())),
    "three-parts": ("views", cursor("loop", "views", 3)),
    "five-parts": ("views", cursor("loop", "views", 3, SOME_ID, "x")),
    "not-utf8": ("views", raw_cursor(b"\xff\xfe\x00")),
}


@pytest.mark.parametrize("name", sorted(TAMPERED))
async def test_every_tampered_cursor_is_a_400(client: TestClient, name: str) -> None:
    who = await account(client)
    await create_document(client, who, isPublic=True)
    sort, tampered = TAMPERED[name]
    resp = await client.get(f"/api/explore?sort={sort}&cursor={tampered}")
    body = await expect_error(resp, 400, "validation_error")
    assert body["details"][0]["field"] == "cursor" and "cursor" in body["error"]


async def test_cursors_at_the_edges_of_their_range_still_work(client: TestClient) -> None:
    who = await account(client)
    made = await create_document(client, who, isPublic=True)
    top = await client.get(f"/api/explore?sort=views&cursor={cursor('loop', 'views', MAX_COUNT, SOME_ID)}")
    assert top.status == 200 and [i["id"] for i in (await top.json())["items"]] == [made["id"]]
    late = cursor("loop", "recent", "9999-12-31T09:59:59-14:00", SOME_ID)  # 23:59:59 UTC
    resp = await client.get(f"/api/explore?sort=recent&cursor={late}")
    assert resp.status == 200 and [i["id"] for i in (await resp.json())["items"]] == [made["id"]]
    bottom = await client.get(f"/api/explore?sort=views&cursor={cursor('loop', 'views', 0, SOME_ID)}")
    assert bottom.status == 200 and (await bottom.json())["items"] == []
