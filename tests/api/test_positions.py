"""Positions past a loop's end are refused on every write path, with ``position_out_of_range``:
REST create and PATCH, the composer import and live edits (docs/musical-time.md)."""

from __future__ import annotations

import copy
from typing import Any

from aiohttp.test_utils import TestClient
from pycrdt import Map

from loadtest.client import CollabClient
from music.schema import step_key
from tests.community import account
from tests.helpers import LOOP, expect_error

CODE = "position_out_of_range"


def loop_with(**changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(LOOP), **changes}


async def created(client: TestClient, who: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    resp = await client.post("/api/loops", json=body, headers=who["headers"])
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


async def test_create_refuses_a_step_or_chord_past_the_end_and_accepts_the_last_position(
    client: TestClient,
) -> None:
    who = await account(client)
    last_step = loop_with(length=1, iconSequence=[{"step": 15, "soundId": "drum-kick"}], chordProgression=[])
    assert (await created(client, who, last_step))["iconSequence"][0]["step"] == 15
    past_step = loop_with(length=1, iconSequence=[{"step": 16, "soundId": "drum-kick"}], chordProgression=[])
    body = await expect_error(
        await client.post("/api/loops", json=past_step, headers=who["headers"]), 400, CODE
    )
    assert "below 16" in body["error"] and "16" in body["error"]
    past_chord = loop_with(length=1, chordProgression=[{"bar": 4, "chord": "G"}], iconSequence=[])
    body = await expect_error(
        await client.post("/api/loops", json=past_chord, headers=who["headers"]), 400, CODE
    )
    assert "chord beats must be below 4" in body["error"]
    # Chord positions are beats: a 4-bar loop has 16 of them (0, 4, 8, 12 are its bar lines).
    four_bars = loop_with(chordProgression=[{"bar": b, "chord": "C"} for b in (0, 4, 8, 12, 15)])
    assert len((await created(client, who, four_bars))["chordProgression"]) == 5


async def test_patch_refuses_positions_past_the_end_and_a_length_that_would_leave_some_outside(
    client: TestClient,
) -> None:
    who = await account(client)
    loop = await created(client, who, loop_with(length=2, chordProgression=[]))  # steps 0 and 4
    url = f"/api/loops/{loop['id']}"
    steps = [{"step": 31, "soundId": "drum-kick"}, {"step": 32, "soundId": "drum-snare"}]
    await expect_error(
        await client.patch(url, json={"iconSequence": steps}, headers=who["headers"]), 400, CODE
    )
    ok = await client.patch(url, json={"iconSequence": steps[:1]}, headers=who["headers"])
    assert ok.status == 200, await ok.text()
    # Shrinking to 1 bar would leave step 31 outside: refused, nothing changed.
    body = await expect_error(await client.patch(url, json={"length": 1}, headers=who["headers"]), 400, CODE)
    assert "31" in body["error"]
    now = await (await client.get(url, headers=who["headers"])).json()
    assert now["length"] == 2 and [s["step"] for s in now["iconSequence"]] == [31]


async def test_the_composer_import_reports_a_loop_with_positions_past_its_end(client: TestClient) -> None:
    who = await account(client)
    good = loop_with()
    bad = loop_with(length=1)  # its chord at beat 4 and ... are outside one bar
    bad["chordProgression"] = [{"bar": 0, "chord": "C"}, {"bar": 4, "chord": "G"}]
    resp = await client.post(
        "/api/migrate", json={"loops": {"good": good, "bad": bad}}, headers=who["headers"]
    )
    assert resp.status == 200, await resp.text()
    result = await resp.json()
    assert result["loops"]["created"] == 1 and result["loops"]["failed"] == 1
    [failure] = result["errors"]
    assert failure["localId"] == "bad" and failure["details"] == [{"code": CODE}]
    assert "chord beats must be below 4" in failure["error"]


async def test_a_live_edit_past_the_end_is_refused_and_rolled_back(client: TestClient) -> None:
    who = await account(client)
    loop = await created(client, who, loop_with(length=1, chordProgression=[]))
    base = str(client.make_url("")).rstrip("/")
    async with (
        CollabClient(base, "loop", loop["id"], token=who["token"]) as editor,
        CollabClient(base, "loop", loop["id"], token=who["token"]) as watcher,
    ):
        steps = editor.doc.get("steps", type=Map)
        outside = {"step": 16, "soundId": "drum-kick", "velocity": 0.8}
        steps[step_key(outside)] = Map(outside)
        await editor.wait_for(lambda: CODE in [e["code"] for e in editor.errors])
        # The room goes on: another client's step inside the loop is taken (the refused
        # client's own later edits depend on the refused one; it reconnects to go on).
        inside = {"step": 12, "soundId": "drum-snare", "velocity": 0.8}
        watcher.doc.get("steps", type=Map)[step_key(inside)] = Map(inside)
        await watcher.flush()
        assert watcher.errors == []
        stored = await (await client.get(f"/api/loops/{loop['id']}", headers=who["headers"])).json()
        assert [s["step"] for s in stored["iconSequence"]] == [0, 4, 12]
    # A live change of length that would leave a step outside is refused too.
    two = await created(
        client,
        who,
        loop_with(length=2, chordProgression=[], iconSequence=[{"step": 20, "soundId": "drum-kick"}]),
    )
    async with CollabClient(base, "loop", two["id"], token=who["token"]) as editor:
        editor.doc.get("meta", type=Map)["length"] = 1
        await editor.wait_for(lambda: CODE in [e["code"] for e in editor.errors])
    stored = await (await client.get(f"/api/loops/{two['id']}", headers=who["headers"])).json()
    assert stored["length"] == 2
