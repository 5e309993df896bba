"""Helpers for the community tests (profiles, comments, moderation, explore, migration)."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import update

from rest.context import REST_CONTEXT
from storage.models import User
from tests.helpers import LOOP, SONG, bearer, sign_up


async def make_admin(client: TestClient, user_id: str) -> None:
    """Set users.is_admin, as ``musicplayground admin grant`` does."""
    async with client.app[REST_CONTEXT].db.write_session() as session:
        await session.execute(update(User).where(User.id == uuid.UUID(user_id)).values(is_admin=True))


async def account(client: TestClient, username: str | None = None, **profile: Any) -> dict[str, Any]:
    """A new account, with a profile when ``username`` is given: ``{token, user, headers}``."""
    session = await sign_up(client)
    session["headers"] = bearer(session["token"])
    if username is not None:
        resp = await client.patch(
            "/api/users/me", json={"username": username, **profile}, headers=session["headers"]
        )
        assert resp.status == 200, await resp.text()
        session["user"] = await resp.json()
    return session


async def create_document(client: TestClient, who: dict[str, Any], kind: str = "loops", **fields: Any) -> Any:
    base = LOOP if kind == "loops" else SONG
    resp = await client.post(f"/api/{kind}", json={**base, **fields}, headers=who["headers"])
    assert resp.status == 201, await resp.text()
    return await resp.json()
