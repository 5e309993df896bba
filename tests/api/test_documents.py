"""Loops and songs over HTTP: CRUD, shapes and aliases, pagination, authorization, quotas."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.helpers import LOOP, SONG, bearer, expect_error, sign_up

KINDS = {"loops": LOOP, "songs": SONG}


@pytest.fixture(params=list(KINDS))
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def create(client: TestClient, kind: str, token: str, **overrides: Any) -> dict[str, Any]:
    resp = await client.post(f"/api/{kind}", json={**KINDS[kind], **overrides}, headers=bearer(token))
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


async def test_create_and_get_loop_round_trips_content(client: TestClient) -> None:
    owner = await sign_up(client)
    loop = await create(client, "loops", owner["token"])
    assert loop["userId"] == owner["user"]["id"]
    assert loop["length"] == 4 and loop["bpm"] == 120 and loop["color"] == "#FFD11A"
    assert loop["chordProgression"] == LOOP["chordProgression"]
    assert loop["iconSequence"] == [
        {"step": 0, "soundId": "drum-kick", "velocity": 1.0},
        {"step": 4, "soundId": "synth-lead", "velocity": 0.8, "note": "G4"},
    ]
    assert loop["viewCount"] == 0 and loop["forkCount"] == 0 and loop["forkedFrom"] is None
    assert loop["createdAt"].endswith("Z")
    got = await (await client.get(f"/api/loops/{loop['id']}", headers=bearer(owner["token"]))).json()
    assert got == {**loop, "samples": []}  # GET also lists the samples the loop uses


async def test_composer_spellings_are_accepted(client: TestClient) -> None:
    owner = await sign_up(client)
    composer_loop = {
        "id": "loop-1700000000001-30a51d",
        "name": "From the composer",
        "bars": 8,
        "color": "#7B61FF",
        "chordProgression": [{"bar": 0, "chord": "Am"}],
        "iconSequence": [
            {"bar": 2, "row": 1, "soundId": "drum-hihat", "velocity": 0.6, "pitch": 42, "duration16": 1}
        ],
        "bpm": 84,
        "schemaVersion": 1,
        "updatedAt": "2025-10-12T12:00:00.000Z",
    }
    resp = await client.post("/api/loops", json=composer_loop, headers=bearer(owner["token"]))
    assert resp.status == 201, await resp.text()
    loop = await resp.json()
    assert loop["length"] == 8 and loop["schemaVersion"] == 1
    assert loop["id"] != composer_loop["id"]
    assert loop["iconSequence"] == [
        {"step": 2, "row": 1, "soundId": "drum-hihat", "velocity": 0.6, "pitch": 42, "duration16": 1}
    ]
    song = await create(client, "songs", owner["token"])
    assert song["totalBars"] == 12
    assert song["timeline"][1] == {
        "id": "block-2",
        "loopId": "loop-b",
        "startBar": 4,
        "duration": 8,
        "color": "#7B61FF",
    }


@pytest.mark.parametrize(
    ("kind_name", "payload", "needle"),
    [
        ("loops", {**LOOP, "length": 3}, "length"),
        ("loops", {**LOOP, "length": 4, "bars": 4}, "only one"),
        ("loops", {**LOOP, "name": ""}, "name"),
        ("loops", {**LOOP, "name": "x" * 101}, "name"),
        ("loops", {**LOOP, "color": "red"}, "color"),
        ("loops", {**LOOP, "bpm": 20}, "bpm"),
        ("loops", {**LOOP, "mystery": 1}, "unknown field 'mystery'"),
        ("loops", {**LOOP, "chordProgression": [{"bar": -1, "chord": "C"}]}, "chordProgression.0.bar"),
        ("loops", {**LOOP, "chordProgression": [{"bar": 0, "chord": "C"}] * 2}, "share a bar"),
        ("loops", {**LOOP, "chordProgression": [{"bar": i, "chord": "C"} for i in range(65)]}, "64"),
        ("loops", {**LOOP, "iconSequence": [{"step": 64, "soundId": "kick"}]}, "step"),
        ("loops", {**LOOP, "iconSequence": [{"step": 1}]}, "soundId is required"),
        ("loops", {**LOOP, "iconSequence": [{"step": 1, "soundId": "k", "velocity": 2}]}, "velocity"),
        ("loops", {**LOOP, "iconSequence": [{"step": 1, "soundId": "k", "extra": 1}]}, "unknown field"),
        ("loops", {**LOOP, "isPublic": "yes"}, "isPublic"),
        ("songs", {**SONG, "timeSignature": "5/4"}, "timeSignature"),
        (
            "songs",
            {**SONG, "timeline": [{"id": "a", "loopId": "l", "startBar": 0, "duration": 0}]},
            "duration",
        ),
        (
            "songs",
            {**SONG, "timeline": [{"id": "a", "loopId": "l", "startBar": 0, "duration": 1}] * 2},
            "unique",
        ),
        ("songs", {"bpm": 100}, "name is required"),
    ],
)
async def test_invalid_documents_get_clear_400s(
    client: TestClient, kind_name: str, payload: dict[str, Any], needle: str
) -> None:
    owner = await sign_up(client)
    resp = await client.post(f"/api/{kind_name}", json=payload, headers=bearer(owner["token"]))
    body = await expect_error(resp, 400, "validation_error")
    assert needle in body["error"] + str(body["details"]), body


async def test_patch_changes_only_sent_fields(client: TestClient) -> None:
    owner = await sign_up(client)
    headers = bearer(owner["token"])
    loop = await create(client, "loops", owner["token"])
    resp = await client.patch(
        f"/api/loops/{loop['id']}", json={"name": "Renamed", "bars": 8, "bpm": None}, headers=headers
    )
    assert resp.status == 200, await resp.text()
    patched = await resp.json()
    assert patched["name"] == "Renamed" and patched["length"] == 8 and patched["bpm"] is None
    assert patched["chordProgression"] == loop["chordProgression"]
    assert patched["updatedAt"] > loop["updatedAt"]
    await expect_error(
        await client.patch(f"/api/loops/{loop['id']}", json={"name": None}, headers=headers), 400
    )
    song = await create(client, "songs", owner["token"])
    resp = await client.patch(
        f"/api/songs/{song['id']}",
        json={"timeline": [{"id": "b", "loopId": "x", "startBar": 30, "duration": 2}]},
        headers=headers,
    )
    assert (await resp.json())["totalBars"] == 32


async def test_authorization_for_every_endpoint(client: TestClient, kind: str) -> None:
    owner, other = await sign_up(client), await sign_up(client)
    doc = await create(client, kind, owner["token"])
    item = f"/api/{kind}/{doc['id']}"

    # No token.
    await expect_error(await client.get(f"/api/{kind}"), 401)
    await expect_error(await client.post(f"/api/{kind}", json=KINDS[kind]), 401)
    await expect_error(await client.get(item), 404)
    await expect_error(await client.patch(item, json={"name": "x"}), 401)
    await expect_error(await client.delete(item), 401)
    # Another user: a private document does not exist for them.
    other_h = bearer(other["token"])
    await expect_error(await client.get(item, headers=other_h), 404)
    await expect_error(await client.patch(item, json={"name": "x"}, headers=other_h), 404)
    await expect_error(await client.delete(item, headers=other_h), 404)
    listed = await (await client.get(f"/api/{kind}", headers=other_h)).json()
    assert listed[kind] == [] and listed["total"] == 0

    # Public: readable by anyone, still writable only by the owner.
    owner_h = bearer(owner["token"])
    assert (await client.patch(item, json={"isPublic": True}, headers=owner_h)).status == 200
    assert (await client.get(item)).status == 200
    assert (await client.get(item, headers=other_h)).status == 200
    await expect_error(await client.patch(item, json={"name": "x"}, headers=other_h), 403, "forbidden")
    await expect_error(await client.delete(item, headers=other_h), 403, "forbidden")

    # The owner deletes; then it is gone for everyone.
    resp = await client.delete(item, headers=owner_h)
    assert resp.status == 200 and await resp.json() == {"success": True}
    await expect_error(await client.get(item, headers=owner_h), 404)
    await expect_error(await client.delete(item, headers=owner_h), 404)


async def test_list_paginates_filters_and_summarizes(client: TestClient) -> None:
    owner = await sign_up(client)
    headers = bearer(owner["token"])
    made = [
        await create(client, "loops", owner["token"], name=f"loop {i}", isPublic=i % 2 == 0) for i in range(5)
    ]

    page1 = await (await client.get("/api/loops?limit=2", headers=headers)).json()
    assert page1["total"] == 5 and page1["page"] == 1 and page1["hasMore"] is True
    assert [x["name"] for x in page1["loops"]] == ["loop 4", "loop 3"]  # newest first
    assert "chordProgression" not in page1["loops"][0]
    page3 = await (await client.get("/api/loops?limit=2&page=3", headers=headers)).json()
    assert [x["name"] for x in page3["loops"]] == ["loop 0"] and page3["hasMore"] is False
    public = await (await client.get("/api/loops?public=true", headers=headers)).json()
    assert public["total"] == 3 and all(x["isPublic"] for x in public["loops"])
    full = await (await client.get("/api/loops?include=content&limit=1", headers=headers)).json()
    assert full["loops"][0]["iconSequence"] == made[-1]["iconSequence"]

    for bad in ("limit=0", "limit=101", "page=0", "page=abc", "include=everything", "public=maybe", "sort=x"):
        await expect_error(await client.get(f"/api/loops?{bad}", headers=headers), 400, "validation_error")


async def test_quota_is_enforced(client: TestClient, kind: str) -> None:
    owner = await sign_up(client)
    quota = 5 if kind == "loops" else 3  # the test settings' quotas
    for _ in range(quota):
        await create(client, kind, owner["token"])
    resp = await client.post(f"/api/{kind}", json=KINDS[kind], headers=bearer(owner["token"]))
    body = await expect_error(resp, 403, "quota_exceeded")
    assert str(quota) in body["error"]
    listed = await (await client.get(f"/api/{kind}", headers=bearer(owner["token"]))).json()
    assert listed["total"] == quota


async def test_concurrent_creates_never_pass_the_quota(client: TestClient) -> None:
    import asyncio

    owner = await sign_up(client)
    headers = bearer(owner["token"])
    results = await asyncio.gather(
        *(client.post("/api/loops", json=LOOP, headers=headers) for _ in range(12))
    )
    statuses = sorted(r.status for r in results)
    assert statuses.count(201) == 5 and statuses.count(403) == 7, statuses


async def test_bad_ids_unknown_ids(client: TestClient, kind: str) -> None:
    owner = await sign_up(client)
    headers = bearer(owner["token"])
    await expect_error(await client.get(f"/api/{kind}/not-a-uuid", headers=headers), 400, "validation_error")
    await expect_error(await client.get(f"/api/{kind}/{uuid.uuid4()}", headers=headers), 404, "not_found")
    await expect_error(
        await client.patch(f"/api/{kind}/{uuid.uuid4()}", json={"name": "x"}, headers=headers), 404
    )


async def test_reads_never_serve_a_stale_copy(client: TestClient, kind: str) -> None:
    owner, other = await sign_up(client), await sign_up(client)
    owner_h, other_h = bearer(owner["token"]), bearer(other["token"])
    doc = await create(client, kind, owner["token"], isPublic=True)
    item = f"/api/{kind}/{doc['id']}"
    for _ in range(2):  # the second read may come from the read cache
        assert (await (await client.get(item, headers=other_h)).json())["name"] == doc["name"]
    await client.patch(item, json={"name": "Renamed"}, headers=owner_h)
    assert (await (await client.get(item, headers=other_h)).json())["name"] == "Renamed"
    await client.patch(item, json={"isPublic": False}, headers=owner_h)
    await expect_error(await client.get(item, headers=other_h), 404)
    assert (await (await client.get(item, headers=owner_h)).json())["isPublic"] is False
    await client.delete(item, headers=owner_h)
    await expect_error(await client.get(item, headers=owner_h), 404)
