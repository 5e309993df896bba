"""POST /api/migrate with the composer's real localStorage data: shapes, remapping,
per-item errors, idempotency (also concurrent), the hourly limit, quotas, live documents."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pycrdt import Doc
from sqlalchemy import func, select

from music.kinds import DocKind
from rest.context import REST_CONTEXT
from storage.models import DocumentUpdate, Loop, MigrationRun, Song, utcnow
from tests.community import account
from tests.helpers import LOOP, expect_error

FIXTURE = json.loads((Path(__file__).parents[1] / "fixtures" / "composer-localstorage.json").read_text())
LOCAL_LOOPS: dict[str, Any] = FIXTURE["music-playground:loops"]
LOCAL_SONGS: dict[str, Any] = FIXTURE["music-playground:songs"]


def composer_payload() -> dict[str, Any]:
    return {"loops": copy.deepcopy(LOCAL_LOOPS), "songs": copy.deepcopy(LOCAL_SONGS)}


async def migrate(client: TestClient, who: dict[str, Any], payload: Any, status: int = 200) -> Any:
    resp = await client.post("/api/migrate", json=payload, headers=who["headers"])
    assert resp.status == status, await resp.text()
    return await resp.json()


async def counts(client: TestClient, user_id: str) -> tuple[int, int]:
    async with client.app[REST_CONTEXT].db.session() as session:
        owner = uuid.UUID(user_id)
        loops = await session.scalar(select(func.count()).select_from(Loop).where(Loop.user_id == owner))
        songs = await session.scalar(select(func.count()).select_from(Song).where(Song.user_id == owner))
    return int(loops or 0), int(songs or 0)


async def forget_last_run(client: TestClient) -> None:
    """Move every recorded migration two hours back (as if the hour had passed)."""
    async with client.app[REST_CONTEXT].db.write_session() as session:
        for run in (await session.execute(select(MigrationRun))).scalars():
            run.created_at = utcnow() - timedelta(hours=2)


async def test_composer_localstorage_migrates_with_remapped_timelines(client: TestClient) -> None:
    who = await account(client)
    result = await migrate(client, who, composer_payload())
    assert result["loops"] == {"created": 3, "failed": 0, "alreadyMigrated": 0}
    assert result["songs"] == {"created": 1, "failed": 0, "alreadyMigrated": 0}
    assert result["errors"] == [] and result["warnings"] == []
    loop_ids = result["idMapping"]["loops"]
    assert set(loop_ids) == set(LOCAL_LOOPS)

    for local_id, new_id in loop_ids.items():
        resp = await client.get(f"/api/loops/{new_id}", headers=who["headers"])
        loop = await resp.json()
        local = LOCAL_LOOPS[local_id]
        assert loop["name"] == local["name"] and loop["length"] == local["bars"]
        assert loop["userId"] == who["user"]["id"] and loop["isPublic"] is False
        assert len(loop["iconSequence"]) == len(local["iconSequence"])
        steps = {
            (st["step"], st["soundId"], st["row"], st["pitch"], st["duration16"])
            for st in loop["iconSequence"]
        }
        assert steps == {
            (st["bar"], st["soundId"], st["row"], st["pitch"], st["duration16"])
            for st in local["iconSequence"]
        }
        assert loop["chordProgression"] == local["chordProgression"]

    (song_local,) = LOCAL_SONGS
    song = await (
        await client.get(f"/api/songs/{result['idMapping']['songs'][song_local]}", headers=who["headers"])
    ).json()
    local_blocks = LOCAL_SONGS[song_local]["timeline"]
    assert [b["loopId"] for b in song["timeline"]] == [loop_ids[b["loopId"]] for b in local_blocks]
    assert [b["duration"] for b in song["timeline"]] == [b["bars"] for b in local_blocks]
    assert song["totalBars"] == 16


async def test_every_document_gets_its_first_crdt_update_once(client: TestClient) -> None:
    who = await account(client)
    result = await migrate(client, who, composer_payload())
    ctx = client.app[REST_CONTEXT]
    new_id = uuid.UUID(next(iter(result["idMapping"]["loops"].values())))
    async with ctx.db.session() as session:
        row = await session.get(Loop, new_id)
        log_entries = await session.scalar(
            select(func.count()).select_from(DocumentUpdate).where(DocumentUpdate.resource_id == new_id)
        )
    assert row is not None and row.doc_state is not None and log_entries == 0
    # The live document is that state: opening it re-authors nothing from the JSON.
    room = await ctx.documents.open_room(DocKind.LOOP, new_id)
    assert room.content()["name"] == row.name
    stored_doc: Doc[Any] = Doc()
    stored_doc.apply_update(row.doc_state)
    assert room.doc.get_state() == stored_doc.get_state()
    async with ctx.db.session() as session:
        again = await session.get(Loop, new_id)
    assert again is not None and again.doc_state == row.doc_state


async def test_arrays_and_the_seed_shape_are_accepted(client: TestClient) -> None:
    who = await account(client)
    payload = {
        "loops": [{**LOOP, "id": "seed-loop-1"}, {**LOOP, "id": "seed-loop-2", "name": "Two"}],
        "songs": [
            {
                "id": "seed-song",
                "name": "S",
                "bpm": 100,
                "timeline": [{"id": "b1", "loopId": "seed-loop-2", "startBar": 0, "duration": 4}],
            }
        ],
    }
    result = await migrate(client, who, payload)
    assert result["loops"]["created"] == 2 and result["songs"]["created"] == 1
    song_id = result["idMapping"]["songs"]["seed-song"]
    song = await (await client.get(f"/api/songs/{song_id}", headers=who["headers"])).json()
    assert song["timeline"][0]["loopId"] == result["idMapping"]["loops"]["seed-loop-2"]


async def test_bad_items_are_reported_and_never_stop_the_others(client: TestClient) -> None:
    who = await account(client)
    payload = composer_payload()
    payload["loops"]["bad-length"] = {**LOCAL_LOOPS["loop-1700000000001-30a51d"], "bars": 3}
    payload["loops"]["not-an-object"] = 42
    payload["loops"]["unknown-field"] = {**LOOP, "mystery": True}
    result = await migrate(client, who, payload)
    assert result["loops"] == {"created": 3, "failed": 3, "alreadyMigrated": 0}
    failures = {e["localId"]: e for e in result["errors"]}
    assert set(failures) == {"bad-length", "not-an-object", "unknown-field"}
    assert all(e["kind"] == "loop" and e["error"] for e in failures.values())
    assert any(d["field"] == "bars" or "length" in d["field"] for d in failures["bad-length"]["details"])
    assert "mystery" in failures["unknown-field"]["error"]
    assert "bad-length" not in result["idMapping"]["loops"]

    # Array items without an id, and duplicates, are reported too.
    arrays = await migrate(
        client, await account(client), {"loops": [LOOP, {**LOOP, "id": "x"}, {**LOOP, "id": "x"}]}
    )
    assert arrays["loops"] == {"created": 1, "failed": 2, "alreadyMigrated": 0}
    assert [e["localId"] for e in arrays["errors"]] == [None, "x"]
    assert arrays["errors"][0]["details"] == [{"index": 0}]


async def test_timeline_blocks_of_unknown_loops_are_reported(client: TestClient) -> None:
    who = await account(client)
    library_resp = await client.post("/api/loops", json=LOOP, headers=who["headers"])
    in_library = (await library_resp.json())["id"]
    payload = {
        "loops": {"good": LOOP, "broken": {**LOOP, "bars": 5}},
        "songs": {
            "song": {
                "name": "Mixed",
                "timeline": [
                    {"id": "b1", "loopId": "good", "startBar": 0, "bars": 4},
                    {"id": "b2", "loopId": in_library, "startBar": 4, "bars": 4},
                    {"id": "b3", "loopId": "broken", "startBar": 8, "bars": 4},
                    {"id": "b4", "loopId": "nowhere", "startBar": 12, "bars": 4},
                ],
            }
        },
    }
    result = await migrate(client, who, payload)
    assert result["songs"]["created"] == 1
    (warning,) = result["warnings"]
    assert warning["localId"] == "song" and warning["kind"] == "song"
    assert {(d["blockId"], d["loopId"]) for d in warning["details"]} == {("b3", "broken"), ("b4", "nowhere")}
    song = await (
        await client.get(f"/api/songs/{result['idMapping']['songs']['song']}", headers=who["headers"])
    ).json()
    assert [b["loopId"] for b in song["timeline"]] == [result["idMapping"]["loops"]["good"], in_library]


async def test_retry_creates_nothing_twice_and_returns_the_same_mapping(client: TestClient) -> None:
    who = await account(client)
    first = await migrate(client, who, composer_payload())
    again = await migrate(client, who, composer_payload())  # within the hour: answered from the mapping
    assert again["idMapping"] == first["idMapping"]
    assert again["loops"] == {"created": 0, "failed": 0, "alreadyMigrated": 3}
    assert again["songs"] == {"created": 0, "failed": 0, "alreadyMigrated": 1}
    assert await counts(client, who["user"]["id"]) == (3, 1)
    # The same local ids from another account are that account's own documents.
    other = await account(client)
    theirs = await migrate(client, other, composer_payload())
    assert set(theirs["idMapping"]["loops"].values()).isdisjoint(first["idMapping"]["loops"].values())


async def test_two_identical_requests_at_once_create_once(client: TestClient) -> None:
    who = await account(client)
    results = await asyncio.gather(*(migrate(client, who, composer_payload()) for _ in range(2)))
    assert results[0]["idMapping"] == results[1]["idMapping"]
    assert sorted(r["loops"]["created"] for r in results) == [0, 3]
    assert await counts(client, who["user"]["id"]) == (3, 1)


async def test_one_migration_of_new_work_per_hour(client: TestClient) -> None:
    who = await account(client)
    await migrate(client, who, {"loops": {"a": LOOP}})
    resp = await client.post("/api/migrate", json={"loops": {"a": LOOP, "b": LOOP}}, headers=who["headers"])
    body = await expect_error(resp, 429, "rate_limited")
    assert 0 < int(resp.headers["Retry-After"]) <= 3600 and "hour" in body["error"]
    assert await counts(client, who["user"]["id"]) == (1, 0)
    # Retrying what was migrated is still answered.
    assert (await migrate(client, who, {"loops": {"a": LOOP}}))["loops"]["alreadyMigrated"] == 1
    await forget_last_run(client)
    later = await migrate(client, who, {"loops": {"a": LOOP, "b": LOOP}})
    assert later["loops"] == {"created": 1, "failed": 0, "alreadyMigrated": 1}


async def test_quota_applies_to_the_whole_payload(client: TestClient) -> None:
    who = await account(client)  # the test quota is 5 loops, 3 songs
    await client.post("/api/loops", json=LOOP, headers=who["headers"])
    payload: dict[str, dict[str, Any]] = {
        "loops": {f"l{i}": LOOP for i in range(5)},
        "songs": {"s": {"name": "S"}},
    }
    body = await expect_error(
        await client.post("/api/migrate", json=payload, headers=who["headers"]), 403, "quota_exceeded"
    )
    assert "nothing was migrated" in body["error"] and body["details"][0]["requested"] == 5
    assert await counts(client, who["user"]["id"]) == (1, 0)
    # Nothing was created, but the refused run was charged: the hour's migration is spent.
    payload["loops"].pop("l4")
    await expect_error(await client.post("/api/migrate", json=payload, headers=who["headers"]), 429)
    await forget_last_run(client)
    result = await migrate(client, who, payload)
    assert result["loops"]["created"] == 4 and result["songs"]["created"] == 1


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ([], "should be an object"),
        ({"loops": "nope"}, "loops"),
        ({"loops": [], "extra": 1}, "unknown field 'extra'"),
        ({"songs": [{"id": str(i), "name": "s"} for i in range(501)]}, "500"),
        ({"loops": [LOOP] * 2001}, "2000"),
    ],
)
async def test_bad_payloads_get_clear_400s_and_change_nothing(
    client: TestClient, payload: Any, needle: str
) -> None:
    who = await account(client)
    body = await expect_error(await client.post("/api/migrate", json=payload, headers=who["headers"]), 400)
    assert needle in body["error"] + json.dumps(body["details"]), body
    assert await counts(client, who["user"]["id"]) == (0, 0)


async def test_migration_needs_an_account(client: TestClient) -> None:
    await expect_error(await client.post("/api/migrate", json=composer_payload()), 401)
    await expect_error(
        await client.post("/api/migrate", json=composer_payload(), headers={"Authorization": "Bearer junk"}),
        401,
    )
