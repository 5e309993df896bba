"""GET /api/explore: only public, visible items; name search; sorts; stable keyset pages."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import delete, text, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import asyncpg  # noqa: F401 - registers postgresql.asyncpg

from rest.context import REST_CONTEXT
from settings import Settings
from storage import explore as stored_explore
from storage.database import Database
from storage.models import Loop, User
from tests.community import account, create_document
from tests.helpers import expect_error


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(max_loops_per_user=100)


async def set_counts(client: TestClient, loop_id: str, *, views: int, forks: int = 0) -> None:
    async with client.app[REST_CONTEXT].db.write_session() as session:
        await session.execute(
            update(Loop).where(Loop.id == uuid.UUID(loop_id)).values(view_count=views, fork_count=forks)
        )


async def explore(client: TestClient, query: str = "") -> Any:
    resp = await client.get(f"/api/explore{query}")
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_only_public_items_with_their_owner(client: TestClient) -> None:
    who = await account(client, "maker", displayName="The Maker", avatarUrl="https://x.test/a.png")
    public = await create_document(client, who, name="Public", isPublic=True)
    await create_document(client, who, name="Private")
    song = await create_document(client, who, "songs", isPublic=True)
    page = await explore(client)
    assert [x["id"] for x in page["items"]] == [public["id"]]
    assert (
        page["total"] == 1 and page["page"] == 1 and page["hasMore"] is False and page["nextCursor"] is None
    )
    item = page["items"][0]
    assert item["owner"] == {
        "id": who["user"]["id"],
        "username": "maker",
        "displayName": "The Maker",
        "avatarUrl": "https://x.test/a.png",
    }
    assert "chordProgression" not in item
    full = await explore(client, "?include=content")
    assert full["items"][0]["chordProgression"] == public["chordProgression"]
    songs = await explore(client, "?type=song")
    assert [x["id"] for x in songs["items"]] == [song["id"]] and "timeline" not in songs["items"][0]


async def test_name_search_is_case_insensitive_prefix_and_substring(client: TestClient) -> None:
    who = await account(client)
    for name in ("Funky Groove", "groovy night", "Ambient 100%", "Lo_fi beat", "Other"):
        await create_document(client, who, name=name, isPublic=True)
    names = lambda page: sorted(x["name"] for x in page["items"])  # noqa: E731
    assert names(await explore(client, "?q=GROOV")) == ["Funky Groove", "groovy night"]
    assert names(await explore(client, "?q=funk")) == ["Funky Groove"]
    assert names(await explore(client, "?q=ove")) == ["Funky Groove"]
    # LIKE wildcards in the text are literal characters.
    assert names(await explore(client, "?q=100%25")) == ["Ambient 100%"]
    assert names(await explore(client, "?q=o_f")) == ["Lo_fi beat"]
    assert names(await explore(client, "?q=_")) == ["Lo_fi beat"]
    assert (await explore(client, "?q=zzz"))["total"] == 0


async def test_sorts_are_total_and_keyset_pages_never_repeat_or_skip(client: TestClient) -> None:
    who = await account(client)
    made = [await create_document(client, who, name=f"L{i}", isPublic=True) for i in range(7)]
    for i, loop in enumerate(made):
        await set_counts(client, loop["id"], views=[5, 5, 5, 1, 9, 0, 5][i], forks=i % 2)
    seen: list[str] = []
    page = await explore(client, "?sort=views&limit=3")
    while True:
        seen += [x["id"] for x in page["items"]]
        if page["nextCursor"] is None:
            break
        # New items arrive between pages (zero views: they sort after everything viewed).
        await create_document(client, who, name="late", isPublic=True)
        page = await explore(client, f"?sort=views&limit=3&cursor={page['nextCursor']}")
    by_views = sorted(made, key=lambda x: x["id"], reverse=True)
    by_views.sort(key=lambda x: [5, 5, 5, 1, 9, 0, 5][made.index(x)], reverse=True)
    assert seen[: len(made) - 1] == [x["id"] for x in by_views if x["name"] != "L5"]
    assert len(seen) == len(set(seen))  # nothing repeated
    assert {x["id"] for x in made} <= set(seen)  # nothing skipped

    recent: list[str] = []
    page = await explore(client, "?sort=recent&limit=4")
    total_before = page["total"]
    while True:
        recent += [x["id"] for x in page["items"]]
        if page["nextCursor"] is None:
            break
        await create_document(client, who, name="newer", isPublic=True)
        page = await explore(client, f"?sort=recent&limit=4&cursor={page['nextCursor']}")
    assert len(recent) == len(set(recent)) == total_before

    forks = await explore(client, "?sort=forks&limit=100")
    counts = [x["forkCount"] for x in forks["items"]]
    assert counts == sorted(counts, reverse=True)


async def test_songs_are_sorted_by_forks_too(client: TestClient) -> None:
    """As docs/community.md says: every sort applies to both types (songs are forked too)."""
    who = await account(client, "songwriter")
    fan = await account(client, "fan")
    await create_document(client, who, "songs", name="Plain", isPublic=True)
    loved = await create_document(client, who, "songs", name="Loved", isPublic=True)
    for _ in range(2):
        resp = await client.post(f"/api/songs/{loved['id']}/fork", headers=fan["headers"])
        assert resp.status == 201, await resp.text()
    page = await explore(client, "?type=song&sort=forks")
    assert [(x["name"], x["forkCount"]) for x in page["items"]] == [("Loved", 2), ("Plain", 0)]


async def test_bad_explore_queries_are_400(client: TestClient) -> None:
    who = await account(client)
    for _ in range(3):
        await create_document(client, who, isPublic=True)
    cursor = (await explore(client, "?limit=1"))["nextCursor"]
    assert cursor
    for bad in (
        "type=sample",
        "sort=best",
        "limit=0",
        "limit=101",
        "page=0",
        "q=",
        "q=" + "x" * 101,
        "cursor=garbage",
        "cursor=" + "x" * 201,
        "include=all",
        "other=1",
        f"sort=views&cursor={cursor}",
        f"cursor={cursor}&page=2",
    ):
        await expect_error(await client.get(f"/api/explore?{bad}"), 400, "validation_error")


async def test_postgres_search_uses_the_trigram_index(postgres_url: str) -> None:
    """With enough rows for the planner to care, the explore search reads the GIN index."""
    marker = uuid.uuid4().hex[:8]  # this test's rows, in the shared session database
    async with Database(postgres_url) as db:
        async with db.write_session() as session:
            await session.execute(
                text(
                    "INSERT INTO users (id, is_anonymous, is_admin, bio, created_at, updated_at,"
                    " last_seen_at) SELECT gen_random_uuid(), true, false, :marker, now(), now(), now()"
                    " FROM generate_series(1, 2000)"
                ),
                {"marker": marker},
            )
            await session.execute(
                text(
                    "INSERT INTO loops (id, user_id, name, length, color, chord_progression, icon_sequence,"
                    " is_public, view_count, fork_count, created_at, updated_at, doc_log_position)"
                    " SELECT gen_random_uuid(), u.id, 'Loop number ' || i, 4, '#FFD11A',"
                    " '[]', '[]', true, 0, 0, now(), now(), 0"
                    " FROM users u CROSS JOIN generate_series(1, 10) AS i WHERE u.bio = :marker"
                ),
                {"marker": marker},
            )
        # Folds the GIN pending list into the index and refreshes the statistics, as autovacuum would.
        async with db.engine.connect() as conn:
            autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.exec_driver_sql("VACUUM ANALYZE loops")
            await autocommit.exec_driver_sql("VACUUM ANALYZE users")
        compiled = stored_explore.search_query(Loop, "zebra").compile(dialect=postgresql.asyncpg.dialect())
        params = tuple(compiled.construct_params()[name] for name in compiled.positiontup or ())
        async with db.engine.connect() as conn:
            plan = "\n".join(row[0] for row in await conn.exec_driver_sql(f"EXPLAIN {compiled}", params))
        async with db.write_session() as session:
            await session.execute(delete(User).where(User.bio == marker))
    assert "ix_loops_name_trgm" in plan, plan
