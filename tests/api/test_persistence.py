"""Data written through the API survives a server restart (same database, new app)."""

from __future__ import annotations

from typing import Any

from musicplayground.app import create_app
from settings import Settings
from tests.helpers import LOOP, SONG, bearer


async def test_documents_and_sessions_survive_restart(aiohttp_client: Any, settings: Settings) -> None:
    first = await aiohttp_client(create_app(settings))
    session = await (await first.post("/api/auth/anonymous")).json()
    headers = bearer(session["token"])
    loop = await (await first.post("/api/loops", json=LOOP, headers=headers)).json()
    song = await (await first.post("/api/songs", json=SONG, headers=headers)).json()
    await first.close()

    second = await aiohttp_client(create_app(settings))
    got_loop = await second.get(f"/api/loops/{loop['id']}", headers=headers)
    assert got_loop.status == 200
    assert await got_loop.json() == {**loop, "samples": []}
    # POST reports `warnings` (SONG's loops are unknown), GET has `loops` (with ?include=loops).
    stored = {k: v for k, v in song.items() if k != "warnings"} | {"loops": None, "missingLoopIds": None}
    assert await (await second.get(f"/api/songs/{song['id']}", headers=headers)).json() == stored
    refreshed = await second.post("/api/auth/refresh", json={"refreshToken": session["refreshToken"]})
    assert refreshed.status == 200
