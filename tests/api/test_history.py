"""The version history over REST, on SQLite and Postgres: versions, time travel, compare,
restore and undo one person as new edits, activity, the rights matrix, retention, deletion."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select, update

from music.kinds import DocKind
from musicplayground.app import create_app
from rest.context import REST_CONTEXT
from settings import Settings
from storage import history as kept
from storage.models import (
    DocumentHistory,
    DocumentHistoryChunk,
    DocumentHistorySettings,
    DocumentUpdate,
    DocumentVersion,
    User,
)
from storage.purge import purge_anonymous_accounts
from tests.helpers import bearer, expect_error, sign_up
from tests.sharing_helpers import add_collaborator, app_db, create_doc, named_user, share


def now() -> str:
    return datetime.now(UTC).isoformat()


async def tick() -> None:
    await asyncio.sleep(0.02)  # distinct timestamps on either side of a time we take


async def patch(
    client: TestClient, plural: str, doc_id: str, token: str, body: dict[str, Any]
) -> dict[str, Any]:
    resp = await client.patch(f"/api/{plural}/{doc_id}", json=body, headers=bearer(token))
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def get(client: TestClient, path: str, token: str | None, **params: str) -> Any:
    resp = await client.get(path, params=params, headers=bearer(token) if token else {})
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def post(client: TestClient, path: str, token: str, body: Any = None, status: int = 200) -> Any:
    resp = await client.post(path, json=body, headers=bearer(token))
    assert resp.status == status, await resp.text()
    return await resp.json()


async def team(
    client: TestClient, plural: str = "loops"
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """An owner's private document with an editor and a viewer: (doc, owner, editor, viewer)."""
    owner, editor, viewer = await named_user(client), await named_user(client), await named_user(client)
    doc = await create_doc(client, plural, owner["token"])
    await add_collaborator(client, plural, doc["id"], owner["token"], editor["username"], "editor")
    await add_collaborator(client, plural, doc["id"], owner["token"], viewer["username"], "viewer")
    return doc, owner, editor, viewer


async def test_versions_time_travel_compare_and_restore_as_a_new_edit(client: TestClient) -> None:
    doc, owner, editor, _viewer = await team(client)
    base = f"/api/loops/{doc['id']}"
    await patch(client, "loops", doc["id"], owner["token"], {"name": "Verse"})
    named = await post(client, f"{base}/versions", owner["token"], {"name": "before the chorus"}, status=201)
    assert named["name"] == "before the chorus" and not named["automatic"]
    await tick()
    chords = [*doc["chordProgression"], {"bar": 8, "chord": "Am"}]
    await patch(client, "loops", doc["id"], editor["token"], {"chordProgression": chords, "length": 8})
    await tick()
    between = now()
    await tick()
    await patch(client, "loops", doc["id"], owner["token"], {"bpm": 90})

    listed = await get(client, f"{base}/versions", owner["token"])
    assert [v["id"] for v in listed["versions"]].count(named["id"]) == 1
    # Authors: who edited since the version before (the automatic one of the first edit, or none).
    assert owner["user"]["id"] in {a for v in listed["versions"] for a in v["authors"]}
    read = await get(client, f"{base}/versions/{named['id']}", owner["token"])
    assert read["content"]["name"] == "Verse" and read["content"]["bpm"] == 120
    assert len(read["content"]["chordProgression"]) == 2

    past = await get(client, f"{base}/versions/at", owner["token"], t=between)
    assert past["content"]["bpm"] == 120 and past["content"]["length"] == 8
    assert {"bar": 8, "chord": "Am"} in past["content"]["chordProgression"]

    compared = await get(client, f"{base}/compare", owner["token"], **{"from": named["id"], "to": "now"})
    assert compared["summary"] == {"chordsAdded": 1, "fieldsChanged": 2}
    assert {c["key"] for c in compared["changes"] if c["type"] == "field"} == {"bpm", "length"}
    by_time = await get(client, f"{base}/compare", owner["token"], **{"from": between, "to": "now"})
    assert by_time["summary"] == {"fieldsChanged": 1}

    log_before = await _log_entries(client, doc["id"])
    restored = await post(client, f"{base}/versions/{named['id']}/restore", editor["token"])
    assert restored["content"]["bpm"] == 120 and restored["content"]["length"] == 4
    assert restored["content"]["chordProgression"] == read["content"]["chordProgression"]
    live = await get(client, base, owner["token"])
    assert live["bpm"] == 120 and live["name"] == "Verse" and len(live["chordProgression"]) == 2
    # A new edit on top, by the restorer, not a reset: the history grew by one entry.
    assert await _log_entries(client, doc["id"]) == log_before + 1
    assert await _newest_author(client, doc["id"]) == uuid.UUID(editor["user"]["id"])
    # ...and the time before the restore still reads as it was.
    still = await get(client, f"{base}/versions/at", owner["token"], t=between)
    assert still["content"]["length"] == 8


async def test_undo_one_person_keeps_a_later_change_by_someone_else(client: TestClient) -> None:
    doc, owner, editor, _viewer = await team(client)
    base = f"/api/loops/{doc['id']}"
    await tick()
    since = now()
    await tick()
    steps = [*doc["iconSequence"], {"step": 8, "soundId": "drum-snare"}]
    chords = [{"bar": 0, "chord": "Dm"}, {"bar": 4, "chord": "G"}]
    await patch(
        client,
        "loops",
        doc["id"],
        editor["token"],
        {"iconSequence": steps, "chordProgression": chords, "bpm": 140},
    )
    await tick()
    # The owner changes one of the editor's cells afterwards: that change must survive.
    await patch(
        client,
        "loops",
        doc["id"],
        owner["token"],
        {"chordProgression": [{"bar": 0, "chord": "Em"}, {"bar": 4, "chord": "G"}]},
    )

    undone = await post(
        client, f"{base}/revert", owner["token"], {"userId": editor["user"]["id"], "since": since}
    )
    content = undone["content"]
    assert content["bpm"] == 120  # the editor's tempo change is gone
    assert {"step": 8, "soundId": "drum-snare", "velocity": 0.8} not in content["iconSequence"]
    assert len(content["iconSequence"]) == 2
    assert {"bar": 0, "chord": "Em"} in content["chordProgression"]  # the owner's later change stays
    live = await get(client, base, owner["token"])
    assert live["bpm"] == 120 and {"bar": 0, "chord": "Em"} in live["chordProgression"]


async def test_activity_names_who_changed_what(client: TestClient) -> None:
    doc, owner, editor, _viewer = await team(client)
    base = f"/api/loops/{doc['id']}"
    await patch(client, "loops", doc["id"], owner["token"], {"name": "Renamed", "color": "#112233"})
    await patch(
        client,
        "loops",
        doc["id"],
        editor["token"],
        {"iconSequence": [*doc["iconSequence"], {"step": 2, "soundId": "drum-hat"}]},
    )
    activity = (await get(client, f"{base}/activity", owner["token"]))["activity"]
    by_user = {entry["userId"]: entry for entry in activity}
    assert by_user[owner["user"]["id"]]["fields"] == ["color", "name"]
    assert by_user[owner["user"]["id"]]["summary"] == {"fieldsChanged": 2}
    assert by_user[editor["user"]["id"]]["summary"] == {"stepsAdded": 1}
    assert by_user[editor["user"]["id"]]["edits"] == 1


async def test_songs_have_history_too(client: TestClient) -> None:
    doc, owner, _editor, _viewer = await team(client, "songs")
    base = f"/api/songs/{doc['id']}"
    version = await post(client, f"{base}/versions", owner["token"], {"name": "first cut"}, status=201)
    moved = [{**doc["timeline"][0], "startBar": 2}, doc["timeline"][1]]
    await patch(client, "songs", doc["id"], owner["token"], {"timeline": moved})
    compared = await get(client, f"{base}/compare", owner["token"], **{"from": version["id"]})
    assert compared["summary"] == {"blocksMoved": 1}
    restored = await post(client, f"{base}/versions/{version['id']}/restore", owner["token"])
    assert restored["content"]["timeline"][0]["startBar"] == 0
    fork = await post(client, f"{base}/versions/{version['id']}/fork", owner["token"], status=201)
    assert fork["forkedFrom"] == doc["id"] and fork["timeline"][0]["startBar"] == 0


async def test_automatic_versions_and_their_retention(client: TestClient) -> None:
    documents = client.app[REST_CONTEXT].documents
    # HISTORY_VERSION_INTERVAL_SECONDS, shortened for this test.
    documents.history.policy = dataclasses.replace(documents.history.policy, version_interval=0.3)
    doc, owner, _editor, _viewer = await team(client)
    base = f"/api/loops/{doc['id']}"
    await patch(client, "loops", doc["id"], owner["token"], {"bpm": 100})

    # Once the edit has settled for the interval, an automatic version is made.
    async def automatic() -> list[dict[str, Any]]:
        listed = await get(client, f"{base}/versions", owner["token"])
        return [v for v in listed["versions"] if v["automatic"]]

    for _ in range(250):
        if await automatic():
            break
        await asyncio.sleep(0.02)
    made = await automatic()
    assert len(made) == 1 and made[0]["summary"] == {"fieldsChanged": 1}
    named = await post(client, f"{base}/versions", owner["token"], {"name": "keep me"}, status=201)
    await patch(client, "loops", doc["id"], owner["token"], {"bpm": 111})

    # Everything so far becomes older than the retention window.
    old = datetime.now(UTC) - timedelta(days=40)
    async with app_db(client).write_session() as session:
        for model in (DocumentHistory, DocumentVersion):
            await session.execute(
                update(model).where(model.resource_id == uuid.UUID(doc["id"])).values(created_at=old)
            )
    await patch(client, "loops", doc["id"], owner["token"], {"bpm": 122})
    assert await documents.history.sweep() >= 1

    listed = await get(client, f"{base}/versions", owner["token"])
    assert [v["id"] for v in listed["versions"] if not v["automatic"]] == [named["id"]]  # named stays
    assert not [v for v in listed["versions"] if v["automatic"] and v["id"] == made[0]["id"]]
    before_window = (datetime.now(UTC) - timedelta(days=35)).isoformat()
    h = bearer(owner["token"])
    resp = await client.get(f"{base}/versions/at", params={"t": before_window}, headers=h)
    await expect_error(resp, 410, "history_not_kept")
    # What fell out of the window is where the history starts: a day ago reads as it was then.
    a_day_ago = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    assert (await get(client, f"{base}/versions/at", owner["token"], t=a_day_ago))["content"]["bpm"] == 111
    recent = await get(client, f"{base}/versions/at", owner["token"], t=now())
    assert recent["content"]["bpm"] == 122
    # What fell out of the window folded into where the history starts: one kept entry remains.
    async with app_db(client).session() as session:
        kept = await session.scalar(
            select(func.count())
            .select_from(DocumentHistory)
            .where(DocumentHistory.resource_id == uuid.UUID(doc["id"]))
        )
    assert kept == 1


async def test_deleting_the_document_deletes_its_history(client: TestClient) -> None:
    doc, owner, _editor, _viewer = await team(client)
    base = f"/api/loops/{doc['id']}"
    await patch(client, "loops", doc["id"], owner["token"], {"bpm": 99})
    await post(client, f"{base}/versions", owner["token"], {"name": "v"}, status=201)
    resp = await client.patch(
        f"{base}/history/settings", json={"viewersMayRead": True}, headers=bearer(owner["token"])
    )
    assert resp.status == 200
    assert await _history_rows(client, doc["id"]) > 0
    resp = await client.delete(base, headers=bearer(owner["token"]))
    assert resp.status == 200
    assert await _history_rows(client, doc["id"]) == 0


async def test_bad_input_is_a_clear_error(client: TestClient) -> None:
    doc, owner, _editor, _viewer = await team(client)
    base = f"/api/loops/{doc['id']}"
    h = bearer(owner["token"])
    await expect_error(await client.get(f"{base}/versions/at", params={"t": "yesterday"}, headers=h), 400)
    await expect_error(await client.get(f"{base}/versions/at", headers=h), 400)
    await expect_error(await client.get(f"{base}/versions/not-a-uuid", headers=h), 400)
    await expect_error(await client.get(f"{base}/versions/{uuid.uuid4()}", headers=h), 404, "not_found")
    await expect_error(await client.get(f"{base}/compare", params={"from": "soon"}, headers=h), 400)
    await expect_error(await client.post(f"{base}/versions", json={"name": ""}, headers=h), 400)
    await expect_error(await client.post(f"{base}/versions", json={"name": "x", "extra": 1}, headers=h), 400)
    await expect_error(
        await client.post(f"{base}/revert", json={"userId": "nope", "since": now()}, headers=h), 400
    )
    await expect_error(
        await client.post(f"{base}/revert", json={"userId": str(uuid.uuid4()), "since": "x"}, headers=h), 400
    )
    long_ago = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    await expect_error(
        await client.get(f"{base}/versions/at", params={"t": long_ago}, headers=h), 410, "history_not_kept"
    )
    await expect_error(await client.get(f"/api/loops/{uuid.uuid4()}/versions", headers=h), 404)


# --- rights --------------------------------------------------------------------------------

ACTORS = ("none", "other", "viewer", "share", "editor", "owner")
READS = ("activity", "versions", "version", "at", "compare", "settings")
WRITES = ("name", "restore", "revert", "fork", "delete")  # delete last: the others use the version


async def _world(client: TestClient) -> dict[str, Any]:
    doc, owner, editor, viewer = await team(client)
    await patch(client, "loops", doc["id"], owner["token"], {"bpm": 101})
    version = await post(
        client, f"/api/loops/{doc['id']}/versions", owner["token"], {"name": "v"}, status=201
    )
    link = await share(client, "loops", doc["id"], owner["token"])
    other, holder = await sign_up(client), await sign_up(client)
    tokens = {
        "none": None,
        "other": other["token"],
        "viewer": viewer["token"],
        "share": holder["token"],
        "editor": editor["token"],
        "owner": owner["token"],
    }
    return {"doc": doc, "version": version, "share": link["shareToken"], "tokens": tokens, "owner": owner}


async def _read(client: TestClient, world: dict[str, Any], actor: str, what: str) -> Any:
    base, version = f"/api/loops/{world['doc']['id']}", world["version"]["id"]
    params = {"shareToken": world["share"]} if actor == "share" else {}
    path, extra = {
        "activity": (f"{base}/activity", {}),
        "versions": (f"{base}/versions", {}),
        "version": (f"{base}/versions/{version}", {}),
        "at": (f"{base}/versions/at", {"t": now()}),
        "compare": (f"{base}/compare", {"from": version}),
        "settings": (f"{base}/history/settings", {}),
    }[what]
    token = world["tokens"][actor]
    return await client.get(path, params={**params, **extra}, headers=bearer(token) if token else {})


@pytest.mark.parametrize("actor", ACTORS)
async def test_rights_to_read_the_history(client: TestClient, actor: str) -> None:
    world = await _world(client)
    cannot_see = actor in ("none", "other")
    writer = actor in ("editor", "owner")
    for allowed in (False, True):
        resp = await client.patch(
            f"/api/loops/{world['doc']['id']}/history/settings",
            json={"viewersMayRead": allowed},
            headers=bearer(world["owner"]["token"]),
        )
        assert resp.status == 200
        for what in READS:
            resp = await _read(client, world, actor, what)
            if cannot_see:
                await expect_error(resp, 404)
            elif what == "settings" or writer or allowed:
                assert resp.status == 200, (what, await resp.text())
                if what == "settings":
                    assert (await resp.json())["viewersMayRead"] is allowed
            else:
                await expect_error(resp, 403, "history_private")


@pytest.mark.parametrize("actor", ACTORS)
async def test_rights_to_change_the_history(client: TestClient, actor: str) -> None:
    world = await _world(client)
    doc_id, version = world["doc"]["id"], world["version"]["id"]
    base = f"/api/loops/{doc_id}"
    token = world["tokens"][actor]
    h = bearer(token) if token else {}
    resp = await client.patch(f"{base}/history/settings", json={"viewersMayRead": True}, headers=h)
    if actor == "owner":
        assert resp.status == 200
    else:
        # A share link grants reading only (with its token): to change anything it is nobody.
        await expect_error(resp, {"none": 401, "other": 404, "share": 404}.get(actor, 403))
    attempts = {
        "name": lambda: client.post(f"{base}/versions", json={"name": "mine"}, headers=h),
        "restore": lambda: client.post(f"{base}/versions/{version}/restore", headers=h),
        "revert": lambda: client.post(
            f"{base}/revert", json={"userId": world["owner"]["user"]["id"], "since": now()}, headers=h
        ),
        "fork": lambda: client.post(
            f"{base}/versions/{version}/fork",
            params={"shareToken": world["share"]} if actor == "share" else {},
            headers=h,
        ),
        "delete": lambda: client.delete(f"{base}/versions/{version}", headers=h),
    }
    for what in WRITES:
        resp = await attempts[what]()
        if actor == "none":
            await expect_error(resp, 401)
        elif actor == "other" or (actor == "share" and what != "fork"):
            await expect_error(resp, 404)
        elif actor in ("editor", "owner"):
            assert resp.status in (200, 201), (what, await resp.text())
        else:
            await expect_error(resp, 403)
    versions = await get(client, f"{base}/versions", world["owner"]["token"])
    named = [v for v in versions["versions"] if v["name"] == "mine"]
    assert len(named) == (1 if actor in ("editor", "owner") else 0)


# --- helpers reading the database ------------------------------------------------------------


async def _log_entries(client: TestClient, doc_id: str) -> int:
    async with app_db(client).session() as session:
        found = await kept.entries(session, "loop", uuid.UUID(doc_id), after=0, with_data=False)
    return len(found)


async def _row_counts(client: TestClient, doc_id: str) -> tuple[int, int]:
    """Entries kept one row each, and entries packed in chunks (their sum over the chunks)."""
    async with app_db(client).session() as session:
        rows = await session.scalar(
            select(func.count())
            .select_from(DocumentHistory)
            .where(DocumentHistory.resource_id == uuid.UUID(doc_id))
        )
        packed = await session.scalar(
            select(func.coalesce(func.sum(DocumentHistoryChunk.entries), 0)).where(
                DocumentHistoryChunk.resource_id == uuid.UUID(doc_id)
            )
        )
    return int(rows or 0), int(packed or 0)


async def test_packed_history_reads_as_before_and_survives_a_restart(
    client: TestClient, aiohttp_client: Any, settings: Settings
) -> None:
    documents = client.app[REST_CONTEXT].documents
    doc, owner, editor, _viewer = await team(client)
    base = f"/api/loops/{doc['id']}"
    doc_id = uuid.UUID(doc["id"])
    moments: list[tuple[str, int]] = []
    for i, bpm in enumerate(range(100, 112)):
        await patch(client, "loops", doc["id"], (owner, editor)[i % 2]["token"], {"bpm": bpm})
        await tick()
        moments.append((now(), bpm))
        await tick()
    named = await post(client, f"{base}/versions", owner["token"], {"name": "all in"}, status=201)
    rows, packed = await _row_counts(client, doc["id"])
    assert rows >= 12 and packed == 0
    entries_before = await _log_entries(client, doc["id"])

    # HISTORY_PACK_AFTER_SECONDS, shortened: every kept entry is due.
    documents.history.policy = dataclasses.replace(documents.history.policy, pack_after=0.0)
    assert await documents.history.pack(DocKind.LOOP, doc_id) == rows
    assert await _row_counts(client, doc["id"]) == (0, rows)
    assert await _log_entries(client, doc["id"]) == entries_before

    # Time travel, compare, activity, restore and undo read the packed entries as before.
    for when, bpm in moments:
        assert (await get(client, f"{base}/versions/at", owner["token"], t=when))["content"]["bpm"] == bpm
    compared = await get(client, f"{base}/compare", owner["token"], **{"from": moments[2][0], "to": "now"})
    assert compared["summary"] == {"fieldsChanged": 1}
    activity = (await get(client, f"{base}/activity", owner["token"]))["activity"]
    assert {entry["userId"] for entry in activity} >= {owner["user"]["id"], editor["user"]["id"]}
    reverted = await post(
        client, f"{base}/revert", owner["token"], {"userId": owner["user"]["id"], "since": moments[-3][0]}
    )
    assert reverted["content"]["bpm"] == 111  # the editor's last change stays
    restored = await post(client, f"{base}/versions/{named['id']}/restore", owner["token"])
    assert restored["content"]["bpm"] == 111

    # Another server on the same database (a restart, or a second instance) reads the same,
    # and two packers at once pack every entry exactly once.
    other = await aiohttp_client(create_app(settings))
    other_history = other.app[REST_CONTEXT].documents.history
    other_history.policy = documents.history.policy
    when, bpm = moments[4]
    assert (await get(other, f"{base}/versions/at", owner["token"], t=when))["content"]["bpm"] == bpm
    for bpm in range(120, 130):
        await patch(other, "loops", doc["id"], owner["token"], {"bpm": bpm})
    await post(other, f"{base}/versions", owner["token"], {"name": "more"}, status=201)
    await post(client, f"{base}/versions", owner["token"], {"name": "more, here too"}, status=201)
    rows, packed = await _row_counts(client, doc["id"])
    assert rows >= 10
    moved = await asyncio.gather(
        documents.history.pack(DocKind.LOOP, doc_id), other_history.pack(DocKind.LOOP, doc_id)
    )
    assert sum(moved) == rows and await _row_counts(client, doc["id"]) == (0, packed + rows)
    assert await _log_entries(client, doc["id"]) == await _log_entries(other, doc["id"])
    for reader in (client, other):
        assert (await get(reader, f"{base}/versions/at", owner["token"], t=now()))["content"]["bpm"] == 129


async def test_retention_folds_packed_entries_into_where_history_starts(client: TestClient) -> None:
    documents = client.app[REST_CONTEXT].documents
    documents.history.policy = dataclasses.replace(documents.history.policy, pack_after=0.0)
    doc, owner, _editor, _viewer = await team(client)
    base = f"/api/loops/{doc['id']}"
    doc_id = uuid.UUID(doc["id"])
    for bpm in (101, 102, 103):
        await patch(client, "loops", doc["id"], owner["token"], {"bpm": bpm})
    await post(client, f"{base}/versions", owner["token"], {"name": "old"}, status=201)
    # Made 40 days ago, then packed (the times travel inside the chunk).
    old = datetime.now(UTC) - timedelta(days=40)
    async with app_db(client).write_session() as session:
        await session.execute(
            update(DocumentHistory).where(DocumentHistory.resource_id == doc_id).values(created_at=old)
        )
    rows, _ = await _row_counts(client, doc["id"])
    assert await documents.history.pack(DocKind.LOOP, doc_id) == rows

    await patch(client, "loops", doc["id"], owner["token"], {"bpm": 122})
    assert await documents.history.sweep() >= 1
    resp = await client.get(
        f"{base}/versions/at",
        params={"t": (datetime.now(UTC) - timedelta(days=35)).isoformat()},
        headers=bearer(owner["token"]),
    )
    await expect_error(resp, 410, "history_not_kept")
    # What the window folded is where the history starts: a day ago reads as the last old edit.
    a_day_ago = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    assert (await get(client, f"{base}/versions/at", owner["token"], t=a_day_ago))["content"]["bpm"] == 103
    assert (await get(client, f"{base}/versions/at", owner["token"], t=now()))["content"]["bpm"] == 122
    async with app_db(client).session() as session:  # the old chunk folded into the base
        old_chunks = await session.scalar(
            select(func.count())
            .select_from(DocumentHistoryChunk)
            .where(
                DocumentHistoryChunk.resource_id == doc_id,
                DocumentHistoryChunk.first_at < old + timedelta(days=1),
            )
        )
    assert old_chunks == 0


async def _newest_author(client: TestClient, doc_id: str) -> uuid.UUID | None:
    async with app_db(client).session() as session:
        newest = None
        for model in (DocumentUpdate, DocumentHistory):
            row = (
                await session.execute(
                    select(model.id, model.author_id)
                    .where(model.resource_id == uuid.UUID(doc_id))
                    .order_by(model.id.desc())
                    .limit(1)
                )
            ).first()
            if row is not None and (newest is None or row[0] > newest[0]):
                newest = row
    return None if newest is None else newest[1]


async def _history_rows(client: TestClient, doc_id: str) -> int:
    total = 0
    async with app_db(client).session() as session:
        for model in (DocumentHistory, DocumentHistoryChunk, DocumentVersion, DocumentHistorySettings):
            total += (
                await session.scalar(
                    select(func.count()).select_from(model).where(model.resource_id == uuid.UUID(doc_id))
                )
                or 0
            )
    return total


async def test_the_anonymous_purge_deletes_the_history(client: TestClient) -> None:
    owner = await sign_up(client)
    doc = await create_doc(client, "loops", owner["token"])
    await patch(client, "loops", doc["id"], owner["token"], {"bpm": 98})
    await post(client, f"/api/loops/{doc['id']}/versions", owner["token"], {"name": "v"}, status=201)
    assert await _history_rows(client, doc["id"]) > 0
    async with app_db(client).write_session() as session:
        await session.execute(
            update(User)
            .where(User.id == uuid.UUID(owner["user"]["id"]))
            .values(last_seen_at=datetime.now(UTC) - timedelta(days=200))
        )
    purged = await purge_anonymous_accounts(app_db(client), inactive_days=90)
    assert [str(account.user_id) for account in purged] == [owner["user"]["id"]]
    assert await _history_rows(client, doc["id"]) == 0
