"""HTTP caching: strong ETags, 304 on If-None-Match, Cache-Control for shared and private caches."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.helpers import LOOP, bearer, sign_up


async def public_loop(client: TestClient) -> tuple[dict[str, Any], dict[str, str]]:
    owner = bearer((await sign_up(client))["token"])
    resp = await client.post("/api/loops", json={**LOOP, "isPublic": True}, headers=owner)
    assert resp.status == 201
    return dict(await resp.json()), owner


async def test_public_read_is_shared_cacheable_with_a_strong_etag(client: TestClient) -> None:
    loop, _owner = await public_loop(client)
    resp = await client.get(f"/api/loops/{loop['id']}")
    assert resp.status == 200
    etag = resp.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"')  # strong: no W/
    cache_control = resp.headers["Cache-Control"]
    assert "public" in cache_control and "stale-while-revalidate=" in cache_control
    assert "Authorization" in resp.headers["Vary"]
    again = await client.get(f"/api/loops/{loop['id']}")
    assert again.headers["ETag"] == etag  # the same bytes, the same tag


async def test_if_none_match_answers_304_without_a_body(client: TestClient) -> None:
    loop, _owner = await public_loop(client)
    first = await client.get(f"/api/loops/{loop['id']}")
    etag = first.headers["ETag"]
    for candidate in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        resp = await client.get(f"/api/loops/{loop['id']}", headers={"If-None-Match": candidate})
        assert resp.status == 304, candidate
        assert await resp.read() == b""
        assert resp.headers["ETag"] == etag
        assert resp.headers["Cache-Control"] == first.headers["Cache-Control"]
    miss = await client.get(f"/api/loops/{loop['id']}", headers={"If-None-Match": '"other"'})
    assert miss.status == 200 and await miss.json() == await first.json()


async def test_a_change_gives_a_new_etag(client: TestClient) -> None:
    loop, owner = await public_loop(client)
    etag = (await client.get(f"/api/loops/{loop['id']}")).headers["ETag"]
    patched = await client.patch(f"/api/loops/{loop['id']}", json={"name": "Renamed"}, headers=owner)
    assert patched.status == 200 and patched.headers["Cache-Control"] == "no-store"
    resp = await client.get(f"/api/loops/{loop['id']}", headers={"If-None-Match": etag})
    assert resp.status == 200
    assert (await resp.json())["name"] == "Renamed"
    assert resp.headers["ETag"] != etag


async def test_reads_with_a_token_are_private(client: TestClient) -> None:
    loop, owner = await public_loop(client)
    for path in (f"/api/loops/{loop['id']}", "/api/loops", "/api/users/me"):
        resp = await client.get(path, headers=owner)
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "private, no-cache", path
        etag = resp.headers["ETag"]
        revalidated = await client.get(path, headers={**owner, "If-None-Match": etag})
        assert revalidated.status == 304, path


async def test_writes_and_errors_are_never_stored(client: TestClient) -> None:
    owner = bearer((await sign_up(client))["token"])
    created = await client.post("/api/loops", json=LOOP, headers=owner)
    assert created.status == 201 and created.headers["Cache-Control"] == "no-store"
    assert "ETag" not in created.headers
    private = await client.get(f"/api/loops/{(await created.json())['id']}")  # no token: 404
    assert private.status == 404
    assert private.headers["Cache-Control"] == "no-store" and "ETag" not in private.headers
