"""Authorization matrix over every community endpoint: no token, a garbage token, another
user, the owner (or author), an admin. (Collaborator roles come with the sharing branch.)"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.community import account, create_document, make_admin
from tests.helpers import LOOP, bearer

CALLERS = ("none", "garbage", "other", "owner", "admin")


@dataclass
class World:
    """A private loop, a public loop with the owner's comment, a report on it, and the callers."""

    headers: dict[str, dict[str, str]]
    private_loop: str
    public_loop: str
    comment: str
    report: str
    owner_id: str


async def build(client: TestClient) -> World:
    owner = await account(client, f"own_{uuid.uuid4().hex[:6]}")
    other = await account(client, f"oth_{uuid.uuid4().hex[:6]}")
    admin = await account(client, f"adm_{uuid.uuid4().hex[:6]}")
    await make_admin(client, admin["user"]["id"])
    private = await create_document(client, owner)
    public = await create_document(client, owner, isPublic=True)
    comment = await (
        await client.post(
            f"/api/loops/{public['id']}/comments", json={"body": "mine"}, headers=owner["headers"]
        )
    ).json()
    report = await (
        await client.post(
            "/api/reports",
            json={"resourceType": "loop", "resourceId": public["id"], "reason": "r"},
            headers=other["headers"],
        )
    ).json()
    return World(
        headers={
            "none": {},
            "garbage": bearer("garbage.token.here"),
            "other": other["headers"],
            "owner": owner["headers"],
            "admin": admin["headers"],
        },
        private_loop=private["id"],
        public_loop=public["id"],
        comment=comment["id"],
        report=report["id"],
        owner_id=owner["user"]["id"],
    )


Call = Callable[[TestClient, World, dict[str, str]], Awaitable[Any]]
ADMIN_ONLY = (401, 401, 403, 403, 200)


def _hide(segment: str, target: Callable[[World], str], action: str) -> Call:  # songs: see below
    async def call(c: TestClient, w: World, h: dict[str, str]) -> Any:
        body: dict[str, Any] = {"json": {"reason": "dmca"}} if action == "hide" else {}
        return await c.post(f"/api/admin/{segment}/{target(w)}/{action}", headers=h, **body)

    return call


# endpoint -> (call, expected status per caller in CALLERS order)
MATRIX: dict[str, tuple[Call, tuple[int, ...]]] = {
    "PATCH /api/users/me": (
        lambda c, w, h: c.patch("/api/users/me", json={"bio": "hi"}, headers=h),
        (401, 401, 200, 200, 200),
    ),
    "GET /api/users/{username}": (
        lambda c, w, h: c.get("/api/users/" + "nobody_at_all", headers=h),
        (404, 401, 404, 404, 404),
    ),
    "GET /api/explore": (lambda c, w, h: c.get("/api/explore", headers=h), (200, 200, 200, 200, 200)),
    "GET comments (private loop)": (
        lambda c, w, h: c.get(f"/api/loops/{w.private_loop}/comments", headers=h),
        (404, 401, 404, 200, 200),
    ),
    "GET comments (public loop)": (
        lambda c, w, h: c.get(f"/api/loops/{w.public_loop}/comments", headers=h),
        (200, 401, 200, 200, 200),
    ),
    "POST comments (private loop)": (
        lambda c, w, h: c.post(f"/api/loops/{w.private_loop}/comments", json={"body": "x"}, headers=h),
        (401, 401, 404, 201, 201),
    ),
    "POST comments (public song)": (
        lambda c, w, h: c.post(f"/api/songs/{w.public_loop}/comments", json={"body": "x"}, headers=h),
        (401, 401, 404, 404, 404),  # a loop id is no song
    ),
    "PATCH /api/comments/{id}": (
        lambda c, w, h: c.patch(f"/api/comments/{w.comment}", json={"body": "edit"}, headers=h),
        (401, 401, 403, 200, 403),
    ),
    "DELETE /api/comments/{id}": (
        lambda c, w, h: c.delete(f"/api/comments/{w.comment}", headers=h),
        (401, 401, 403, 200, 200),
    ),
    "POST /api/reports": (
        lambda c, w, h: c.post(
            "/api/reports", json={"resourceType": "user", "resourceId": w.owner_id, "reason": "x"}, headers=h
        ),
        (401, 401, 201, 400, 201),  # nobody may report themselves
    ),
    "GET /api/admin/reports": (lambda c, w, h: c.get("/api/admin/reports", headers=h), ADMIN_ONLY),
    "POST /api/admin/reports/{id}/resolve": (
        lambda c, w, h: c.post(
            f"/api/admin/reports/{w.report}/resolve", json={"action": "dismiss"}, headers=h
        ),
        ADMIN_ONLY,
    ),
    **{
        f"POST /api/admin/{segment}/{{id}}/{action}": (_hide(segment, target, action), ADMIN_ONLY)
        for segment, target in (
            ("loops", lambda w: w.public_loop),
            ("users", lambda w: w.owner_id),
            ("comments", lambda w: w.comment),
        )
        for action in ("hide", "unhide")
    },
    "POST /api/migrate": (
        lambda c, w, h: c.post("/api/migrate", json={"loops": {"local-1": LOOP}}, headers=h),
        (401, 401, 200, 200, 200),
    ),
}


@pytest.mark.parametrize("endpoint", list(MATRIX))
async def test_authorization_matrix(client: TestClient, endpoint: str) -> None:
    call, expected = MATRIX[endpoint]
    got = []
    for caller in CALLERS:
        world = await build(client)  # a fresh world per caller: some calls change it
        resp = await call(client, world, world.headers[caller])
        body = await resp.json()
        if resp.status >= 400:
            assert isinstance(body["error"], str) and body["code"], body
        got.append(resp.status)
    assert tuple(got) == expected, dict(zip(CALLERS, got, strict=True))


async def test_admin_song_routes(client: TestClient) -> None:
    world = await build(client)
    owner_headers = world.headers["owner"]
    song = (
        await (
            await client.post("/api/songs", json={"name": "S", "isPublic": True}, headers=owner_headers)
        ).json()
    )["id"]
    for caller, status in zip(CALLERS, ADMIN_ONLY, strict=True):
        resp = await client.post(
            f"/api/admin/songs/{song}/hide", json={"reason": "x"}, headers=world.headers[caller]
        )
        assert resp.status == status, (caller, await resp.text())
    assert (await client.get(f"/api/songs/{song}")).status == 404
    assert (
        await client.post(f"/api/admin/songs/{song}/unhide", headers=world.headers["admin"])
    ).status == 200
    assert (await client.get(f"/api/songs/{song}")).status == 200
