"""Room lifecycle in one process: join storms, periodic snapshots, unloading idle documents."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pycrdt import Map

from loadtest.client import CollabClient
from music.kinds import DocKind
from music.reading import loop_doc_to_content
from music.schema import STEPS, step_key
from rest.context import REST_CONTEXT
from settings import Settings
from storage import document_store as stored
from tests.helpers import bearer, eventually
from tests.realtime.conftest import ClientFactory


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The join storm opens 25 sockets with one account.
    return settings.replace(
        snapshot_interval=0.3,
        snapshot_quiet_interval=QUIET_INTERVAL,
        room_idle_seconds=0.5,
        max_connections_per_user=32,
    )


QUIET_INTERVAL = 5.0


async def test_join_storm_loads_and_encodes_once(
    client: TestClient, base_url: str, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    service = client.app[REST_CONTEXT].documents
    joiners = [CollabClient(base_url, "loop", loop["id"], token=owner["token"]) for _ in range(25)]
    try:
        await asyncio.gather(*(c.connect() for c in joiners))
        room = service.loaded(DocKind.LOOP, __import__("uuid").UUID(loop["id"]))
        assert room is not None and len(room.sessions) == 25
        assert service.loads == 1
        assert room.full_encodes == 1
        for c in joiners:
            assert loop_doc_to_content(c.doc)["name"] == loop["name"]
    finally:
        await asyncio.gather(*(c.close() for c in joiners))


async def test_snapshots_fold_the_log_and_idle_rooms_unload(
    client: TestClient, connect: ClientFactory, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    import uuid

    ctx = client.app[REST_CONTEXT]
    doc_id = uuid.UUID(loop["id"])

    c = await connect(loop["id"], token=owner["token"])
    c.doc.get("meta", type=Map)["name"] = "Snapshotted"
    # While the client stays connected, the periodic snapshot folds the log into the row.
    Loop = __import__("storage.models", fromlist=["Loop"]).Loop

    async def folded() -> bool:
        async with ctx.db.session() as session:
            row = await session.get(Loop, doc_id)
            pending = await stored.has_unsnapshotted_updates(
                session, resource_type="loop", resource_id=doc_id
            )
            return row.name == "Snapshotted" and row.doc_log_position > 0 and not pending

    for _ in range(100):
        if await folded():
            break
        await asyncio.sleep(0.05)
    assert await folded()
    assert c.connected

    await c.close()
    await eventually(lambda: ctx.documents.loaded(DocKind.LOOP, doc_id) is None, timeout=5)
    got = await (await client.get(f"/api/loops/{loop['id']}", headers=bearer(owner["token"]))).json()
    assert got["name"] == "Snapshotted"


async def test_a_quiet_room_of_small_edits_is_folded_later_than_a_renamed_one(
    client: TestClient, connect: ClientFactory, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    import time
    import uuid

    ctx = client.app[REST_CONTEXT]
    key = (DocKind.LOOP, uuid.UUID(loop["id"]))
    snapshots = ctx.documents.persistence.snapshots

    def folds() -> int:
        return sum(1 for room_key, _, _ in snapshots if room_key == key)

    c = await connect(loop["id"], token=owner["token"])
    await asyncio.sleep(1.0)  # the join's own folds, if any, are done
    before = folds()
    step = {"step": 3, "soundId": "drum-kick", "velocity": 0.8}
    c.doc.get(STEPS, type=Map)[step_key(step)] = Map(step)
    edited = time.monotonic()
    # Only a sequencer cell changed, and little: the regular interval (0.3 s) passes unfolded.
    await asyncio.sleep(2.0)
    assert folds() == before
    await eventually(lambda: folds() > before, timeout=QUIET_INTERVAL + 10)
    assert time.monotonic() - edited >= QUIET_INTERVAL - 0.5
    # A rename changes what listings show: folded at the regular interval.
    before = folds()
    c.doc.get("meta", type=Map)["name"] = "Renamed"
    renamed = time.monotonic()
    await eventually(lambda: folds() > before, timeout=QUIET_INTERVAL + 10)
    assert time.monotonic() - renamed < QUIET_INTERVAL - 1.0
    row = await (await client.get(f"/api/loops/{loop['id']}", headers=bearer(owner["token"]))).json()
    assert row["name"] == "Renamed" and len(row["iconSequence"]) >= 1


async def test_row_without_crdt_state_gets_its_first_update_once(
    client: TestClient, connect: ClientFactory, owner: dict[str, Any]
) -> None:
    import uuid

    from storage import library
    from storage.models import Loop

    ctx = client.app[REST_CONTEXT]
    content = {"name": "Pre-CRDT", "length": 2, "bpm": 90, "color": "#123456", "schema_version": 1}
    content.update(chord_progression=[{"bar": 0, "chord": "Dm"}], icon_sequence=[], is_public=False)
    async with ctx.db.write_session() as session:
        row = await library.create_document(
            session, Loop, user_id=uuid.UUID(owner["user"]["id"]), values=content, quota=10
        )
    assert row.doc_state is None
    c = await connect(str(row.id), token=owner["token"])
    got = loop_doc_to_content(c.doc)
    assert (got["name"], got["length"], got["bpm"], got["color"]) == ("Pre-CRDT", 2, 90, "#123456")
    assert got["chordProgression"] == [{"bar": 0, "chord": "Dm"}]
    async with ctx.db.session() as session:
        stored_row = await session.get(Loop, row.id)
        assert stored_row.doc_state is not None
