"""Comments reach the document's live room at once, as the ``comment`` event."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from loadtest.client import CollabClient
from tests.helpers import bearer, sign_up
from tests.realtime.conftest import ClientFactory


def comment_events(client: Any) -> list[Any]:
    return [payload for event, payload in client.events if event == "comment"]


async def test_created_edited_deleted_comments_are_pushed_to_the_room(
    client: TestClient, connect: ClientFactory, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    headers = bearer(owner["token"])
    assert (
        await client.patch(f"/api/loops/{loop['id']}", json={"isPublic": True}, headers=headers)
    ).status == 200
    editor = await connect(loop["id"], token=owner["token"])
    viewer = await connect(loop["id"], token=(await sign_up(client))["token"])

    resp = await client.post(f"/api/loops/{loop['id']}/comments", json={"body": "live!"}, headers=headers)
    created = await resp.json()
    for c in (editor, viewer):

        def one_comment(c: CollabClient = c) -> bool:
            return len(comment_events(c)) == 1

        await c.wait_for(one_comment)
        assert comment_events(c)[0] == {"action": "created", "comment": created}

    resp = await client.patch(f"/api/comments/{created['id']}", json={"body": "edited"}, headers=headers)
    edited = await resp.json()
    await viewer.wait_for(lambda: len(comment_events(viewer)) == 2)
    assert comment_events(viewer)[1] == {"action": "edited", "comment": edited}

    assert (await client.delete(f"/api/comments/{created['id']}", headers=headers)).status == 200
    await viewer.wait_for(lambda: len(comment_events(viewer)) == 3)
    event = comment_events(viewer)[2]
    assert event["action"] == "deleted" and event["comment"]["id"] == created["id"]
    # A comment on another document never reaches this room.
    other = await client.post("/api/loops", json={"name": "other", "length": 1}, headers=headers)
    other_id = (await other.json())["id"]
    await client.post(f"/api/loops/{other_id}/comments", json={"body": "elsewhere"}, headers=headers)
    await client.post(f"/api/loops/{loop['id']}/comments", json={"body": "here"}, headers=headers)
    await viewer.wait_for(lambda: len(comment_events(viewer)) == 4)
    assert comment_events(viewer)[3]["comment"]["body"] == "here"
