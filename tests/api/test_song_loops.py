"""A song's loops: unknown or unreadable loops in a timeline are reported on save, and
``GET /api/songs/{id}?include=loops`` returns a song with the loops it uses in one request."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp.test_utils import TestClient

from tests.helpers import LOOP, bearer, expect_error, sign_up


def _song(*loop_ids: str) -> dict[str, Any]:
    return {
        "name": "Song",
        "timeline": [
            {"id": f"b{i}", "loopId": loop_id, "startBar": 4 * i, "duration": 4}
            for i, loop_id in enumerate(loop_ids)
        ],
    }


async def _loop(client: TestClient, token: str, **overrides: Any) -> dict[str, Any]:
    resp = await client.post("/api/loops", json={**LOOP, **overrides}, headers=bearer(token))
    assert resp.status == 201
    return dict(await resp.json())


async def test_unknown_and_private_loops_are_reported_on_create_and_patch(client: TestClient) -> None:
    me, other = await sign_up(client), await sign_up(client)
    mine = await _loop(client, me["token"])
    public = await _loop(client, other["token"], isPublic=True, name="Public")
    private = await _loop(client, other["token"], name="Private")
    missing = str(uuid.uuid4())
    resp = await client.post(
        "/api/songs",
        json=_song(mine["id"], public["id"], private["id"], missing, "loop-local-1"),
        headers=bearer(me["token"]),
    )
    assert resp.status == 201
    song = await resp.json()
    assert len(song["timeline"]) == 5  # kept as sent: the loop may be migrated or shared later
    [warning] = song["warnings"]
    assert warning["code"] == "unknown_loop" and "3 timeline block(s)" in warning["error"]
    assert warning["details"] == [
        {"blockId": "b2", "loopId": private["id"], "reason": "loop not found"},
        {"blockId": "b3", "loopId": missing, "reason": "loop not found"},
        {"blockId": "b4", "loopId": "loop-local-1", "reason": "loop not found"},
    ]
    clean = await client.patch(
        f"/api/songs/{song['id']}", json=_song(public["id"], mine["id"]), headers=bearer(me["token"])
    )
    assert clean.status == 200 and (await clean.json())["warnings"] == []
    renamed = await client.patch(f"/api/songs/{song['id']}", json={"name": "X"}, headers=bearer(me["token"]))
    assert (await renamed.json())["warnings"] == []
    bad = await client.patch(
        f"/api/songs/{song['id']}", json=_song(private["id"]), headers=bearer(me["token"])
    )
    assert bad.status == 200
    assert [d["loopId"] for d in (await bad.json())["warnings"][0]["details"]] == [private["id"]]


async def test_include_loops_returns_the_readable_loops_with_live_content(client: TestClient) -> None:
    me, other = await sign_up(client), await sign_up(client)
    mine = await _loop(client, me["token"])
    public = await _loop(client, other["token"], isPublic=True, name="Public")
    private = await _loop(client, other["token"], name="Private")
    await client.patch(f"/api/loops/{mine['id']}", json={"bpm": 99}, headers=bearer(me["token"]))
    song = await (
        await client.post(
            "/api/songs",
            json=_song(mine["id"], public["id"], mine["id"], private["id"]),
            headers=bearer(me["token"]),
        )
    ).json()

    plain = await (await client.get(f"/api/songs/{song['id']}", headers=bearer(me["token"]))).json()
    assert plain["loops"] is None and plain["missingLoopIds"] is None

    resp = await client.get(f"/api/songs/{song['id']}?include=loops", headers=bearer(me["token"]))
    assert resp.status == 200
    full = await resp.json()
    assert [loop["id"] for loop in full["loops"]] == [mine["id"], public["id"]]  # timeline order, once each
    assert full["loops"][0]["bpm"] == 99 and full["loops"][0]["iconSequence"] == mine["iconSequence"]
    assert full["missingLoopIds"] == [private["id"]]
    assert full["timeline"] == song["timeline"]

    # A public song read by someone else: only the loops that reader may read.
    await client.patch(f"/api/songs/{song['id']}", json={"isPublic": True}, headers=bearer(me["token"]))
    seen = await (
        await client.get(f"/api/songs/{song['id']}?include=loops", headers=bearer(other["token"]))
    ).json()
    assert [loop["id"] for loop in seen["loops"]] == [public["id"], private["id"]]
    assert seen["missingLoopIds"] == [mine["id"]]

    await expect_error(await client.get(f"/api/songs/{song['id']}?include=everything"), 400)


async def test_the_spec_documents_include_loops(client: TestClient) -> None:
    spec = await (await client.get("/api/openapi.json")).json()
    get_song = spec["paths"]["/api/songs/{id}"]["get"]
    include = next(p for p in get_song["parameters"] if p["name"] == "include")
    assert include["in"] == "query" and "loops" in str(include["schema"])
    ref = get_song["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert set(spec["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]) >= {
        "loops",
        "missingLoopIds",
    }
    post_song = spec["paths"]["/api/songs"]["post"]["responses"]["201"]["content"]["application/json"]
    assert post_song["schema"]["$ref"].endswith("/SongWritten")
