"""A restore is a new edit on top: the stock npm client (``yjs`` + ``y-socket.io``), offline
with the pre-restore state, reconnects without bringing the old content back or duplicating
anything, and the edit it made offline still merges (SQLite and Postgres)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient

from tests.helpers import bearer
from tests.js_client import JsClient


async def rest_content(client: TestClient, loop_id: str, token: str) -> dict[str, Any]:
    resp = await client.get(f"/api/loops/{loop_id}", headers=bearer(token))
    assert resp.status == 200
    return dict(await resp.json())


async def until(probe: Any, predicate: Any, timeout: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await probe()
        if predicate(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"never matched: {value}")
        await asyncio.sleep(0.05)


async def test_a_stale_stock_client_does_not_undo_a_restore(
    client: TestClient, base_url: str, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    token, loop_id = owner["token"], loop["id"]
    resp = await client.post(f"/api/loops/{loop_id}/versions", json={"name": "clean"}, headers=bearer(token))
    assert resp.status == 201
    version = await resp.json()
    original_steps = len(loop["iconSequence"])

    async with JsClient.start(base_url, f"loop:{loop_id}", auth={"token": token}) as js:
        await js.wait_event("synced")
        await js.command("toggle-step", step=12, soundId="drum-clap", on=True)
        await js.command("set-chord", bar=8, chord="Am")
        await js.command("set-meta", key="bpm", value=150)
        await until(
            lambda: rest_content(client, loop_id, token),
            lambda c: c["bpm"] == 150 and len(c["iconSequence"]) == original_steps + 1,
        )

        await js.command("disconnect")
        await js.wait_event("disconnect")
        # Offline: an edit of a cell the restore does not touch.
        await js.command("toggle-step", step=14, soundId="drum-hihat", on=True)

        resp = await client.post(
            f"/api/loops/{loop_id}/versions/{version['id']}/restore", headers=bearer(token)
        )
        assert resp.status == 200, await resp.text()
        restored = (await resp.json())["content"]
        assert restored["bpm"] == loop["bpm"] and len(restored["iconSequence"]) == original_steps

        # The client still holds the pre-restore state; it reconnects and syncs both ways.
        reconnecting = len(js.events)
        await js.command("connect")
        await js.wait_event("synced", since=reconnecting)
        expected_steps = {(s["step"], s["soundId"]) for s in restored["iconSequence"]} | {(14, "drum-hihat")}

        def settled(content: dict[str, Any]) -> bool:
            cells = [(s["step"], s["soundId"]) for s in content["iconSequence"]]
            return sorted(cells) == sorted(expected_steps) and content["bpm"] == loop["bpm"]

        server = await until(lambda: rest_content(client, loop_id, token), settled)
        assert {"bar": 8, "chord": "Am"} not in server["chordProgression"]
        assert server["chordProgression"] == loop["chordProgression"]
        # The client's own document agrees: nothing old came back, nothing doubled.
        dump = await until(js.dump, lambda d: len(d["steps"]) == len(expected_steps))
        assert dump["meta"]["bpm"] == loop["bpm"]
        assert set(dump["chords"]) == {str(c["bar"]) for c in loop["chordProgression"]}
