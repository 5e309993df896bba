"""A listing shows the content of a document being edited right now, not its older row."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from pycrdt import Map

from tests.helpers import bearer
from tests.realtime.conftest import ClientFactory


async def test_a_listing_carries_the_live_edit_of_an_open_document(
    client: TestClient, connect: ClientFactory, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    editor = await connect(loop["id"], token=owner["token"])
    watcher = await connect(loop["id"], token=owner["token"])
    editor.doc.get("meta", type=Map)["name"] = "Renamed live"
    # The server applies an edit before relaying it: once the watcher has it, so has the room.
    await watcher.wait_for(lambda: watcher.doc.get("meta", type=Map).get("name") == "Renamed live")
    listed = await (await client.get("/api/loops", headers=bearer(owner["token"]))).json()
    [item] = listed["loops"]
    assert (item["id"], item["name"]) == (loop["id"], "Renamed live")
