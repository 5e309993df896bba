"""Helpers for the sharing / collaborator tests.

Usernames are set straight in the database: the profile API (``PATCH /api/users/me``) comes
with the community issue; once it lands these tests can switch to it.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import update

from rest.context import REST_CONTEXT
from storage.database import Database
from storage.models import SharedLink, User, utcnow
from tests.helpers import LOOP, SONG, bearer, sign_up

CONTENT = {"loops": LOOP, "songs": SONG}


def app_db(client: TestClient) -> Database:
    """The running app's own database (already open)."""
    return client.app[REST_CONTEXT].db


async def set_username(
    client: TestClient, user_id: str, username: str, display_name: str | None = None
) -> None:
    async with app_db(client).write_session() as session:
        values: dict[str, Any] = {"username": username}
        if display_name is not None:
            values["display_name"] = display_name
        await session.execute(update(User).where(User.id == uuid.UUID(user_id)).values(**values))


async def named_user(client: TestClient, username: str | None = None) -> dict[str, Any]:
    """A new account with a username (``account["username"]``)."""
    account = await sign_up(client)
    account["username"] = username or f"u{uuid.uuid4().hex[:12]}"
    await set_username(client, account["user"]["id"], account["username"], display_name=account["username"])
    return account


async def create_doc(client: TestClient, plural: str, token: str, **overrides: Any) -> dict[str, Any]:
    resp = await client.post(f"/api/{plural}", json={**CONTENT[plural], **overrides}, headers=bearer(token))
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


async def share(
    client: TestClient, plural: str, doc_id: str, token: str, expires_in: float | None = None
) -> dict[str, Any]:
    resp = await client.post(
        f"/api/{plural}/{doc_id}/share", json={"expiresIn": expires_in}, headers=bearer(token)
    )
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


async def add_collaborator(
    client: TestClient, plural: str, doc_id: str, owner_token: str, username: str, role: str
) -> None:
    resp = await client.post(
        f"/api/{plural}/{doc_id}/collaborators",
        json={"username": username, "role": role},
        headers=bearer(owner_token),
    )
    assert resp.status == 201, await resp.text()


async def expire_share(client: TestClient, token: str) -> None:
    """Move a link's expiry into the past (tests do not wait for real time to pass)."""
    async with app_db(client).write_session() as session:
        await session.execute(
            update(SharedLink)
            .where(SharedLink.share_token == token)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
