"""Authorization matrix: every endpoint of sharing, forks and collaborators, every kind of caller.

Callers: no token, a garbage token, another signed-in user, a viewer collaborator, an editor
collaborator, the owner, a holder of a live share token, a holder of an expired one. Each
cell is its own test, on SQLite and Postgres; a refused request changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.helpers import bearer, sign_up
from tests.sharing_helpers import add_collaborator, create_doc, expire_share, named_user, share

ACTORS = ("none", "garbage", "other", "viewer", "editor", "owner", "share", "expired")


@dataclass
class World:
    plural: str
    doc: dict[str, Any]
    tokens: dict[str, str | None]  # actor -> bearer token
    live_token: str
    expired_token: str
    viewer_name: str
    newcomer_name: str

    def headers(self, actor: str) -> dict[str, str]:
        token = self.tokens[actor]
        return bearer(token) if token else {}

    def share_token(self, actor: str) -> str:
        return self.expired_token if actor == "expired" else self.live_token


@pytest.fixture(params=["loops", "songs"])
def plural(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def build_world(client: TestClient, plural: str) -> World:
    owner = await named_user(client)
    viewer = await named_user(client)
    editor = await named_user(client)
    newcomer = await named_user(client)
    other, holder, late = await sign_up(client), await sign_up(client), await sign_up(client)
    doc = await create_doc(client, plural, owner["token"])  # private
    await add_collaborator(client, plural, doc["id"], owner["token"], viewer["username"], "viewer")
    await add_collaborator(client, plural, doc["id"], owner["token"], editor["username"], "editor")
    live = await share(client, plural, doc["id"], owner["token"])
    expired = await share(client, plural, doc["id"], owner["token"], expires_in=1)
    await expire_share(client, expired["shareToken"])
    tokens: dict[str, str | None] = {
        "none": None,
        "garbage": "not-a-real-token",
        "other": other["token"],
        "viewer": viewer["token"],
        "editor": editor["token"],
        "owner": owner["token"],
        "share": holder["token"],
        "expired": late["token"],
    }
    return World(
        plural,
        doc,
        tokens,
        live["shareToken"],
        expired["shareToken"],
        viewer["username"],
        newcomer["username"],
    )


async def state(client: TestClient, world: World) -> dict[str, Any]:
    """What a refused request must not change (read as the owner)."""
    owner = bearer(world.tokens["owner"] or "")
    item = f"/api/{world.plural}/{world.doc['id']}"
    doc = await (await client.get(item, headers=owner)).json()
    shares = await (await client.get(f"{item}/shares", headers=owner)).json()
    people = await (await client.get(f"{item}/collaborators", headers=owner)).json()
    doc.pop("viewCount", None)  # reads are allowed to count
    return {"doc": doc, "shares": shares, "collaborators": people}


Call = Callable[[TestClient, World, str], Any]


def _item(world: World) -> str:
    return f"/api/{world.plural}/{world.doc['id']}"


ENDPOINTS: dict[str, tuple[Call, dict[str, int]]] = {
    "create_share": (
        lambda c, w, a: c.post(f"{_item(w)}/share", json={"expiresIn": 2}, headers=w.headers(a)),
        {
            "none": 401,
            "garbage": 401,
            "other": 404,
            "viewer": 403,
            "editor": 403,
            "owner": 201,
            "share": 404,
            "expired": 404,
        },
    ),
    "list_shares": (
        lambda c, w, a: c.get(f"{_item(w)}/shares", headers=w.headers(a)),
        {
            "none": 401,
            "garbage": 401,
            "other": 404,
            "viewer": 403,
            "editor": 403,
            "owner": 200,
            "share": 404,
            "expired": 404,
        },
    ),
    "revoke_share": (
        lambda c, w, a: c.delete(f"/api/shares/{w.share_token(a)}", headers=w.headers(a)),
        {
            "none": 401,
            "garbage": 401,
            "other": 404,
            "viewer": 403,
            "editor": 403,
            "owner": 200,
            "share": 404,
            "expired": 404,
        },
    ),
    "get_shared": (
        lambda c, w, a: c.get(f"/api/shared/{w.share_token(a)}", headers=w.headers(a)),
        {
            "none": 200,
            "garbage": 401,
            "other": 200,
            "viewer": 200,
            "editor": 200,
            "owner": 200,
            "share": 200,
            "expired": 410,
        },
    ),
    "list_collaborators": (
        lambda c, w, a: c.get(f"{_item(w)}/collaborators", headers=w.headers(a)),
        {
            "none": 401,
            "garbage": 401,
            "other": 404,
            "viewer": 200,
            "editor": 200,
            "owner": 200,
            "share": 404,
            "expired": 404,
        },
    ),
    "add_collaborator": (
        lambda c, w, a: c.post(
            f"{_item(w)}/collaborators",
            json={"username": w.newcomer_name, "role": "viewer"},
            headers=w.headers(a),
        ),
        {
            "none": 401,
            "garbage": 401,
            "other": 404,
            "viewer": 403,
            "editor": 403,
            "owner": 201,
            "share": 404,
            "expired": 404,
        },
    ),
    "change_role": (
        lambda c, w, a: c.patch(
            f"{_item(w)}/collaborators/{w.viewer_name}", json={"role": "editor"}, headers=w.headers(a)
        ),
        {
            "none": 401,
            "garbage": 401,
            "other": 404,
            "viewer": 403,
            "editor": 403,
            "owner": 200,
            "share": 404,
            "expired": 404,
        },
    ),
    "remove_collaborator": (
        lambda c, w, a: c.delete(f"{_item(w)}/collaborators/{w.viewer_name}", headers=w.headers(a)),
        {
            "none": 401,
            "garbage": 401,
            "other": 404,
            "viewer": 403,
            "editor": 403,
            "owner": 200,
            "share": 404,
            "expired": 404,
        },
    ),
    "list_collaborating": (
        lambda c, w, a: c.get(f"/api/{w.plural}?scope=collaborating", headers=w.headers(a)),
        {
            "none": 401,
            "garbage": 401,
            "other": 200,
            "viewer": 200,
            "editor": 200,
            "owner": 200,
            "share": 200,
            "expired": 200,
        },
    ),
    "get_document": (
        lambda c, w, a: c.get(_item(w), headers=w.headers(a)),
        {
            "none": 404,
            "garbage": 401,
            "other": 404,
            "viewer": 200,
            "editor": 200,
            "owner": 200,
            "share": 404,
            "expired": 404,
        },
    ),
    "edit_content": (
        lambda c, w, a: c.patch(_item(w), json={"name": "Changed"}, headers=w.headers(a)),
        {
            "none": 401,
            "garbage": 401,
            "other": 404,
            "viewer": 403,
            "editor": 200,
            "owner": 200,
            "share": 404,
            "expired": 404,
        },
    ),
    "change_visibility": (
        lambda c, w, a: c.patch(_item(w), json={"isPublic": True}, headers=w.headers(a)),
        {
            "none": 401,
            "garbage": 401,
            "other": 404,
            "viewer": 403,
            "editor": 403,
            "owner": 200,
            "share": 404,
            "expired": 404,
        },
    ),
    "delete_document": (
        lambda c, w, a: c.delete(_item(w), headers=w.headers(a)),
        {
            "none": 401,
            "garbage": 401,
            "other": 404,
            "viewer": 403,
            "editor": 403,
            "owner": 200,
            "share": 404,
            "expired": 404,
        },
    ),
    "public_page": (
        lambda c, w, a: c.get(f"/{w.plural[:-1]}/{w.share_token(a)}", headers=w.headers(a)),
        # Pages are for browsers: a bearer token is neither needed nor checked.
        {
            "none": 200,
            "garbage": 200,
            "other": 200,
            "viewer": 200,
            "editor": 200,
            "owner": 200,
            "share": 200,
            "expired": 410,
        },
    ),
    "embed_page": (
        lambda c, w, a: c.get(f"/embed/{w.share_token(a)}", headers=w.headers(a)),
        {
            "none": 200,
            "garbage": 200,
            "other": 200,
            "viewer": 200,
            "editor": 200,
            "owner": 200,
            "share": 200,
            "expired": 410,
        },
    ),
}

READS = {
    "list_shares",
    "get_shared",
    "list_collaborators",
    "list_collaborating",
    "get_document",
    "public_page",
    "embed_page",
}


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
async def test_matrix(client: TestClient, plural: str, endpoint: str, actor: str) -> None:
    world = await build_world(client, plural)
    call, expected = ENDPOINTS[endpoint]
    before = await state(client, world)
    resp = await call(client, world, actor)
    text = await resp.text()
    assert resp.status == expected[actor], text
    if resp.status >= 400 and resp.content_type == "application/json":
        body = await resp.json()
        assert isinstance(body["error"], str) and body["code"] and isinstance(body["details"], list)
    if resp.status >= 400 or endpoint in READS:
        assert await state(client, world) == before
    if endpoint == "list_collaborating" and resp.status == 200:
        listed = await resp.json()
        assert listed["total"] == (1 if actor in ("viewer", "editor") else 0)


FORK_EXPECTED = {
    "none": 401,
    "garbage": 401,
    "other": 404,
    "viewer": 201,
    "editor": 201,
    "owner": 201,
    "share": 201,
    "expired": 404,
}


@pytest.mark.parametrize("actor", ACTORS)
async def test_fork_matrix(client: TestClient, plural: str, actor: str) -> None:
    world = await build_world(client, plural)
    body = {"shareToken": world.share_token(actor)} if actor in ("share", "expired") else None
    before = await state(client, world)
    resp = await client.post(f"/api/{plural}/{world.doc['id']}/fork", json=body, headers=world.headers(actor))
    assert resp.status == FORK_EXPECTED[actor], await resp.text()
    after = await state(client, world)
    forks = after["doc"].pop("forkCount") - before["doc"].pop("forkCount")
    assert forks == (1 if resp.status == 201 else 0)
    assert after == before
