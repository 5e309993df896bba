"""Share links, the shared read, view counts and forks over HTTP (both databases)."""

from __future__ import annotations

import asyncio
import io
import re
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from rest.context import REST_CONTEXT
from settings import Settings
from tests.helpers import LOOP, bearer, expect_error, sign_up
from tests.sharing_helpers import create_doc, expire_share, share


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Views are flushed by the tests themselves (the periodic flush would split batches).
    # The test client is the "proxy": X-Forwarded-For plays the anonymous viewers' addresses.
    return settings.replace(
        view_count_flush_interval=3600.0, max_loops_per_user=25, trusted_proxies=("127.0.0.1",)
    )


def from_address(ip: str, **headers: str) -> dict[str, str]:
    return {"X-Forwarded-For": ip, **headers}


@pytest.fixture(params=["loops", "songs"])
def plural(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def views(client: TestClient) -> Any:
    return client.app[REST_CONTEXT].views


async def test_share_link_shape_and_live_read(client: TestClient, plural: str) -> None:
    owner = await sign_up(client)
    doc = await create_doc(client, plural, owner["token"])
    link = await share(client, plural, doc["id"], owner["token"], expires_in=1.5)
    kind = plural[:-1]
    assert re.fullmatch(rf"http://testserver/{kind}/[A-Za-z0-9_-]{{32,}}", link["shareUrl"])
    assert link["shareUrl"].endswith(link["shareToken"])
    assert link["expiresAt"] is not None and link["expired"] is False
    # A REST edit is what the shared read shows at once.
    resp = await client.patch(
        f"/api/{plural}/{doc['id']}", json={"name": "Renamed"}, headers=bearer(owner["token"])
    )
    assert resp.status == 200
    resp = await client.get(f"/api/shared/{link['shareToken']}")
    body = await resp.json()
    assert resp.status == 200, body
    assert body["resourceType"] == kind
    assert body["data"]["id"] == doc["id"] and body["data"]["name"] == "Renamed"
    assert set(body["owner"]) == {"displayName", "avatarUrl"}


async def test_share_tokens_are_distinct_and_never_expiring_by_default(client: TestClient) -> None:
    owner = await sign_up(client)
    doc = await create_doc(client, "loops", owner["token"])
    resp = await client.post(
        f"/api/loops/{doc['id']}/share", headers=bearer(owner["token"])
    )  # no body at all
    assert resp.status == 201, await resp.text()
    first = await resp.json()
    second = await share(client, "loops", doc["id"], owner["token"])
    assert first["expiresAt"] is None and first["shareToken"] != second["shareToken"]
    listed = await (await client.get(f"/api/loops/{doc['id']}/shares", headers=bearer(owner["token"]))).json()
    assert {s["shareToken"] for s in listed["shares"]} == {first["shareToken"], second["shareToken"]}


@pytest.mark.parametrize("expires_in", [0, -1, 0.0, 1e9, "7", True, [1]])
async def test_bad_expires_in_is_refused_and_creates_nothing(client: TestClient, expires_in: Any) -> None:
    owner = await sign_up(client)
    doc = await create_doc(client, "loops", owner["token"])
    resp = await client.post(
        f"/api/loops/{doc['id']}/share", json={"expiresIn": expires_in}, headers=bearer(owner["token"])
    )
    await expect_error(resp, 400, "validation_error")
    listed = await (await client.get(f"/api/loops/{doc['id']}/shares", headers=bearer(owner["token"]))).json()
    assert listed["shares"] == []


async def test_unknown_field_and_oversized_body_are_refused(client: TestClient) -> None:
    owner = await sign_up(client)
    doc = await create_doc(client, "loops", owner["token"])
    url = f"/api/loops/{doc['id']}/share"
    await expect_error(await client.post(url, json={"expires": 1}, headers=bearer(owner["token"])), 400)
    huge = b'{"expiresIn": 1, "pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    resp = await client.post(
        url, data=io.BytesIO(huge), headers={**bearer(owner["token"]), "Content-Type": "application/json"}
    )
    await expect_error(resp, 413)
    listed = await (await client.get(f"{url}s", headers=bearer(owner["token"]))).json()
    assert listed["shares"] == []


async def test_unknown_expired_revoked_and_deleted_have_distinct_codes(
    client: TestClient, database_url: str
) -> None:
    owner = await sign_up(client)
    doc = await create_doc(client, "loops", owner["token"])
    await expect_error(await client.get("/api/shared/" + "A" * 32), 404, "share_not_found")
    await expect_error(await client.get("/api/shared/" + "x" * 500), 404, "share_not_found")

    expired = await share(client, "loops", doc["id"], owner["token"], expires_in=1)
    await expire_share(client, expired["shareToken"])
    await expect_error(await client.get(f"/api/shared/{expired['shareToken']}"), 410, "share_expired")
    listed = await (await client.get(f"/api/loops/{doc['id']}/shares", headers=bearer(owner["token"]))).json()
    assert [s["expired"] for s in listed["shares"]] == [True]

    revoked = await share(client, "loops", doc["id"], owner["token"])
    resp = await client.delete(f"/api/shares/{revoked['shareToken']}", headers=bearer(owner["token"]))
    assert resp.status == 200 and (await resp.json()) == {"success": True}
    await expect_error(await client.get(f"/api/shared/{revoked['shareToken']}"), 410, "share_revoked")
    again = await client.delete(f"/api/shares/{revoked['shareToken']}", headers=bearer(owner["token"]))
    await expect_error(again, 410, "share_revoked")

    live = await share(client, "loops", doc["id"], owner["token"])
    assert (await client.delete(f"/api/loops/{doc['id']}", headers=bearer(owner["token"]))).status == 200
    await expect_error(await client.get(f"/api/shared/{live['shareToken']}"), 404, "share_not_found")


async def test_a_share_token_does_not_open_another_document(client: TestClient) -> None:
    owner = await sign_up(client)
    shared = await create_doc(client, "loops", owner["token"])
    private = await create_doc(client, "loops", owner["token"])
    link = await share(client, "loops", shared["id"], owner["token"])
    stranger = await sign_up(client)
    resp = await client.post(
        f"/api/loops/{private['id']}/fork",
        json={"shareToken": link["shareToken"]},
        headers=bearer(stranger["token"]),
    )
    await expect_error(resp, 404, "not_found")


# --- view counts ------------------------------------------------------------------------


async def test_views_count_once_per_viewer_and_never_the_owner(client: TestClient) -> None:
    owner = await sign_up(client)
    doc = await create_doc(client, "loops", owner["token"], isPublic=True)
    link = await share(client, "loops", doc["id"], owner["token"])
    reader = await sign_up(client)
    for _ in range(10):  # ten reloads by one signed-in viewer
        assert (await client.get(f"/api/loops/{doc['id']}", headers=bearer(reader["token"]))).status == 200
        assert (
            await client.get(f"/api/shared/{link['shareToken']}", headers=bearer(reader["token"]))
        ).status == 200
    for _ in range(10):  # the owner's own views
        assert (await client.get(f"/api/loops/{doc['id']}", headers=bearer(owner["token"]))).status == 200
    for ip, agent in (("10.0.0.1", "a"), ("10.0.0.1", "b"), ("10.0.0.2", "a")):  # anonymous: the address
        resp = await client.get(
            f"/api/shared/{link['shareToken']}", headers=from_address(ip, **{"User-Agent": agent})
        )
        assert resp.status == 200
    assert await views(client).flush() == 3  # the reader, and two addresses
    got = await (await client.get(f"/api/loops/{doc['id']}", headers=bearer(owner["token"]))).json()
    assert got["viewCount"] == 3
    # The same viewers again in the same period: nothing more.
    await client.get(f"/api/shared/{link['shareToken']}", headers=from_address("10.0.0.2"))
    assert await views(client).flush() == 0
    listed = await (await client.get("/api/loops", headers=bearer(owner["token"]))).json()
    assert listed["loops"][0]["viewCount"] == 3


async def test_a_burst_of_1000_views_is_a_handful_of_writes(client: TestClient) -> None:
    owner = await sign_up(client)
    doc = await create_doc(client, "loops", owner["token"], isPublic=True)
    counter = views(client)
    before = counter.statements
    await asyncio.gather(
        *(
            client.get(f"/api/loops/{doc['id']}", headers=from_address(f"10.0.{i % 500 // 250}.{i % 250}"))
            for i in range(1000)
        )
    )
    assert counter.pending == 500
    assert await counter.flush() == 500
    assert counter.statements - before <= 4  # 2 inserts, 1 increment, 1 purge
    got = await (await client.get(f"/api/loops/{doc['id']}", headers=bearer(owner["token"]))).json()
    assert got["viewCount"] == 500


async def test_two_instances_count_a_viewer_once(client: TestClient, settings: Settings) -> None:
    """Two counters on one database (two instances): the table deduplicates, not the buffer."""
    from storage.database import Database
    from storage.views import ViewCounter

    owner = await sign_up(client)
    doc = await create_doc(client, "loops", owner["token"], isPublic=True)
    async with Database(settings.database_url) as db:
        other = ViewCounter(db, period_seconds=settings.view_count_window, flush_interval=3600)
        here = views(client)
        for counter in (here, other):
            counter.record("loop", uuid.UUID(doc["id"]), "u:shared-viewer")
            counter.record("loop", uuid.UUID(doc["id"]), f"u:{id(counter)}")
        assert sum(await asyncio.gather(here.flush(), other.flush())) == 3
    got = await (await client.get(f"/api/loops/{doc['id']}", headers=bearer(owner["token"]))).json()
    assert got["viewCount"] == 3


async def test_a_new_period_counts_the_viewer_again(client: TestClient, settings: Settings) -> None:
    from storage.database import Database
    from storage.views import ViewCounter

    now = [60.0 * 20_000]  # the start of a 60-second period
    owner = await sign_up(client)
    doc = await create_doc(client, "loops", owner["token"], isPublic=True)
    async with Database(settings.database_url) as db:
        counter = ViewCounter(db, period_seconds=60, flush_interval=3600, clock=lambda: now[0])
        counter.record("loop", uuid.UUID(doc["id"]), "u:someone")
        assert await counter.flush() == 1
        now[0] += 30
        counter.record("loop", uuid.UUID(doc["id"]), "u:someone")
        assert await counter.flush() == 0
        now[0] += 60
        counter.record("loop", uuid.UUID(doc["id"]), "u:someone")
        assert await counter.flush() == 1


# --- forks ------------------------------------------------------------------------------


async def test_fork_copies_live_content_into_a_new_private_document(client: TestClient) -> None:
    owner = await sign_up(client)
    parent = await create_doc(client, "loops", owner["token"], isPublic=True)
    edit = {"name": "Edited live", "chordProgression": [{"bar": 0, "chord": "Dm"}]}
    assert (
        await client.patch(f"/api/loops/{parent['id']}", json=edit, headers=bearer(owner["token"]))
    ).status == 200
    forker = await sign_up(client)
    resp = await client.post(f"/api/loops/{parent['id']}/fork", headers=bearer(forker["token"]))
    fork = await resp.json()
    assert resp.status == 201, fork
    assert fork["id"] != parent["id"] and fork["userId"] == forker["user"]["id"]
    assert fork["forkedFrom"] == parent["id"] and fork["isPublic"] is False
    assert fork["name"] == "Edited live" and fork["chordProgression"] == [{"bar": 0, "chord": "Dm"}]
    assert (
        fork["iconSequence"]
        == (await (await client.get(f"/api/loops/{parent['id']}")).json())["iconSequence"]
    )
    assert fork["forkCount"] == 0 and fork["viewCount"] == 0
    got = await (await client.get(f"/api/loops/{parent['id']}", headers=bearer(owner["token"]))).json()
    assert got["forkCount"] == 1
    # The fork has its own document: editing it leaves the parent alone.
    resp = await client.patch(
        f"/api/loops/{fork['id']}", json={"name": "Mine now"}, headers=bearer(forker["token"])
    )
    assert resp.status == 200
    assert (await (await client.get(f"/api/loops/{parent['id']}")).json())["name"] == "Edited live"


async def test_song_fork_copies_the_timeline(client: TestClient) -> None:
    owner, forker = await sign_up(client), await sign_up(client)
    parent = await create_doc(client, "songs", owner["token"], isPublic=True)
    resp = await client.post(f"/api/songs/{parent['id']}/fork", headers=bearer(forker["token"]))
    fork = await resp.json()
    assert resp.status == 201, fork
    assert fork["forkedFrom"] == parent["id"] and fork["userId"] == forker["user"]["id"]
    assert fork["timeline"] == parent["timeline"] and fork["totalBars"] == parent["totalBars"] == 12
    assert fork["isPublic"] is False


async def test_twenty_concurrent_forks_count_twenty(
    client: TestClient, plural: str, settings: Settings
) -> None:
    owner = await sign_up(client)
    parent = await create_doc(client, plural, owner["token"], isPublic=True)
    forkers = [await sign_up(client) for _ in range(10)]  # two forks each: under every quota
    responses = await asyncio.gather(
        *(
            client.post(f"/api/{plural}/{parent['id']}/fork", headers=bearer(forkers[i % 10]["token"]))
            for i in range(20)
        )
    )
    assert [r.status for r in responses] == [201] * 20
    got = await (await client.get(f"/api/{plural}/{parent['id']}", headers=bearer(owner["token"]))).json()
    assert got["forkCount"] == 20


async def test_fork_of_a_fork_points_at_its_immediate_parent_and_survives_deletion(
    client: TestClient, plural: str
) -> None:
    owner = await sign_up(client)
    root = await create_doc(client, plural, owner["token"], isPublic=True)
    middle_owner, leaf_owner = await sign_up(client), await sign_up(client)
    middle = await (
        await client.post(f"/api/{plural}/{root['id']}/fork", headers=bearer(middle_owner["token"]))
    ).json()
    resp = await client.patch(
        f"/api/{plural}/{middle['id']}", json={"isPublic": True}, headers=bearer(middle_owner["token"])
    )
    assert resp.status == 200
    leaf = await (
        await client.post(f"/api/{plural}/{middle['id']}/fork", headers=bearer(leaf_owner["token"]))
    ).json()
    assert leaf["forkedFrom"] == middle["id"]
    assert (
        await client.delete(f"/api/{plural}/{middle['id']}", headers=bearer(middle_owner["token"]))
    ).status == 200
    got = await (await client.get(f"/api/{plural}/{leaf['id']}", headers=bearer(leaf_owner["token"]))).json()
    assert got["forkedFrom"] is None  # documented: the link to a deleted parent is cleared
    assert got["name"] == leaf["name"]


async def test_fork_needs_read_access_and_respects_quota(client: TestClient) -> None:
    owner = await sign_up(client)
    private = await create_doc(client, "loops", owner["token"])
    stranger = await sign_up(client)
    url = f"/api/loops/{private['id']}/fork"
    await expect_error(await client.post(url, headers=bearer(stranger["token"])), 404, "not_found")
    await expect_error(
        await client.post(url, json={"shareToken": "nope"}, headers=bearer(stranger["token"])), 404
    )
    link = await share(client, "loops", private["id"], owner["token"])
    resp = await client.post(url, json={"shareToken": link["shareToken"]}, headers=bearer(stranger["token"]))
    assert resp.status == 201, await resp.text()
    for _ in range(24):
        await create_doc(client, "loops", stranger["token"])
    resp = await client.post(url, json={"shareToken": link["shareToken"]}, headers=bearer(stranger["token"]))
    await expect_error(resp, 403, "quota_exceeded")
    got = await (await client.get(f"/api/loops/{private['id']}", headers=bearer(owner["token"]))).json()
    assert got["forkCount"] == 1  # the refused fork counted nothing


async def test_openapi_lists_the_sharing_routes(client: TestClient) -> None:
    spec = await (await client.get("/api/openapi.json")).json()
    for path, method in [
        ("/api/loops/{id}/share", "post"),
        ("/api/songs/{id}/shares", "get"),
        ("/api/shares/{token}", "delete"),
        ("/api/shared/{token}", "get"),
        ("/api/loops/{id}/fork", "post"),
        ("/api/songs/{id}/collaborators/{username}", "patch"),
        ("/loop/{token}", "get"),
        ("/embed/{token}", "get"),
    ]:
        assert method in spec["paths"][path], path
    assert "410" in spec["paths"]["/api/shared/{token}"]["get"]["responses"]


async def test_loop_body_fixture_is_unchanged() -> None:
    assert LOOP["isPublic"] is False
