"""The inbox over REST and the live socket, in the real app (both databases): who is
notified, grouping, cursor pages, unread counts, marking read, kinds turned off, visibility;
the debounced content events."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import socketio
from aiohttp.test_utils import TestClient

from rest.context import REST_CONTEXT
from storage.models import Loop
from tests.community import make_admin
from tests.events.conftest import add_endpoint, until
from tests.events.receiver import Receiver
from tests.helpers import bearer, eventually, expect_error, sign_up
from tests.sharing_helpers import add_collaborator, create_doc, named_user


async def inbox(client: TestClient, token: str, **query: Any) -> dict[str, Any]:
    resp = await client.get("/api/notifications", params=query, headers=bearer(token))
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def wait_inbox(client: TestClient, token: str, predicate: Any, timeout: float = 10) -> dict[str, Any]:
    async def matching() -> dict[str, Any] | None:
        page = await inbox(client, token)
        return page if predicate(page) else None

    return await until(matching, timeout=timeout)


async def comment(client: TestClient, doc_id: str, token: str, body: str = "nice") -> dict[str, Any]:
    resp = await client.post(f"/api/loops/{doc_id}/comments", json={"body": body}, headers=bearer(token))
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


async def test_comments_on_one_loop_are_one_entry_with_a_count(client: TestClient) -> None:
    owner = await sign_up(client)
    loop = await create_doc(client, "loops", owner["token"], isPublic=True)
    fans = [await sign_up(client) for _ in range(3)]
    for i, fan in enumerate(fans):
        await comment(client, loop["id"], fan["token"], f"comment {i}")
    page = await wait_inbox(
        client, owner["token"], lambda p: p["notifications"] and p["notifications"][0]["count"] == 3
    )
    [entry] = page["notifications"]
    assert entry["kind"] == "loop.comment_created"
    assert entry["resource"] == {"type": "loop", "id": loop["id"]}
    assert entry["actorIds"] == [fans[2]["user"]["id"], fans[1]["user"]["id"], fans[0]["user"]["id"]]
    assert entry["data"]["comment"]["body"] == "comment 2"
    assert page["unreadCount"] == 1 and entry["read"] is False
    # The thread's participants hear of later comments; nobody of their own.
    await comment(client, loop["id"], owner["token"], "thanks all")
    for fan, later in zip(fans, (3, 2, 1), strict=True):
        page = await wait_inbox(
            client,
            fan["token"],
            lambda p: p["notifications"] and p["notifications"][0]["data"]["comment"]["body"] == "thanks all",
        )
        assert [e["count"] for e in page["notifications"]] == [later]
    assert (await inbox(client, owner["token"]))["notifications"][0]["count"] == 3


async def test_mark_read_and_a_new_entry_after_it(client: TestClient) -> None:
    owner, fan = await sign_up(client), await sign_up(client)
    loop = await create_doc(client, "loops", owner["token"], isPublic=True)
    await comment(client, loop["id"], fan["token"])
    page = await wait_inbox(client, owner["token"], lambda p: p["unreadCount"] == 1)
    entry_id = page["notifications"][0]["id"]
    resp = await client.post(f"/api/notifications/{entry_id}/read", headers=bearer(owner["token"]))
    assert resp.status == 200 and (await resp.json())["marked"] == 1
    page = await inbox(client, owner["token"])
    assert page["unreadCount"] == 0 and page["notifications"][0]["read"] is True
    await comment(client, loop["id"], fan["token"], "again")  # a read entry is not counted into
    page = await wait_inbox(client, owner["token"], lambda p: len(p["notifications"]) == 2)
    assert [e["read"] for e in page["notifications"]] == [False, True]
    resp = await client.post("/api/notifications/read", headers=bearer(owner["token"]))
    assert (await resp.json())["marked"] == 1
    assert (await inbox(client, owner["token"]))["unreadCount"] == 0
    # Someone else's entry does not exist for you.
    resp = await client.post(f"/api/notifications/{entry_id}/read", headers=bearer(fan["token"]))
    await expect_error(resp, 404)


async def test_cursor_pages_newest_first(client: TestClient) -> None:
    owner = await sign_up(client)
    fan = await sign_up(client)
    loops = [await create_doc(client, "loops", owner["token"], isPublic=True, name=f"l{i}") for i in range(5)]
    for loop in loops:
        await comment(client, loop["id"], fan["token"])
    await wait_inbox(client, owner["token"], lambda p: p["unreadCount"] == 5)
    seen: list[str] = []
    cursor = None
    while True:
        page = await inbox(client, owner["token"], limit=2, **({"cursor": cursor} if cursor else {}))
        seen += [e["resource"]["id"] for e in page["notifications"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == [loop["id"] for loop in reversed(loops)]
    resp = await client.get("/api/notifications?cursor=nonsense", headers=bearer(owner["token"]))
    await expect_error(resp, 400, "invalid_cursor")
    resp = await client.get("/api/notifications?limit=500", headers=bearer(owner["token"]))
    await expect_error(resp, 400)
    await expect_error(await client.get("/api/notifications"), 401)


async def test_kinds_turned_off_are_not_received(client: TestClient) -> None:
    owner, fan = await sign_up(client), await sign_up(client)
    resp = await client.get("/api/notifications/settings", headers=bearer(owner["token"]))
    kinds = (await resp.json())["kinds"]
    assert kinds["loop.comment_created"] is True and "loop.created" not in kinds  # nobody is notified of it
    resp = await client.patch(
        "/api/notifications/settings",
        json={"kinds": {"loop.comment_created": False}},
        headers=bearer(owner["token"]),
    )
    assert (await resp.json())["kinds"]["loop.comment_created"] is False
    resp = await client.patch(
        "/api/notifications/settings", json={"kinds": {"no.such": False}}, headers=bearer(owner["token"])
    )
    await expect_error(resp, 400, "unknown_event_kind")
    loop = await create_doc(client, "loops", owner["token"], isPublic=True)
    await comment(client, loop["id"], fan["token"])
    await client.post(f"/api/loops/{loop['id']}/fork", json={}, headers=bearer(fan["token"]))
    page = await wait_inbox(client, owner["token"], lambda p: p["notifications"])
    assert [e["kind"] for e in page["notifications"]] == ["loop.forked"]


async def test_collaborator_changes_reach_that_person(client: TestClient) -> None:
    owner, mate = await named_user(client), await named_user(client)
    loop = await create_doc(client, "loops", owner["token"])
    await add_collaborator(client, "loops", loop["id"], owner["token"], mate["username"], "editor")
    page = await wait_inbox(client, mate["token"], lambda p: p["notifications"])
    [entry] = page["notifications"]
    assert entry["kind"] == "loop.collaborator_added" and entry["data"]["role"] == "editor"
    assert entry["actorIds"] == [owner["user"]["id"]]
    assert (await inbox(client, owner["token"]))["notifications"] == []


async def test_nothing_about_a_document_you_can_no_longer_read(client: TestClient) -> None:
    owner, fan = await sign_up(client), await sign_up(client)
    loop = await create_doc(client, "loops", owner["token"], isPublic=True)
    await comment(client, loop["id"], fan["token"])
    await comment(client, loop["id"], owner["token"], "reply")
    await wait_inbox(client, fan["token"], lambda p: p["unreadCount"] == 1)
    resp = await client.patch(
        f"/api/loops/{loop['id']}", json={"isPublic": False}, headers=bearer(owner["token"])
    )
    assert resp.status == 200
    page = await inbox(client, fan["token"])
    assert page == {"notifications": [], "nextCursor": None, "unreadCount": 0}
    # Hidden by a moderator: gone for everyone but its owner.
    await client.patch(f"/api/loops/{loop['id']}", json={"isPublic": True}, headers=bearer(owner["token"]))
    assert (await inbox(client, fan["token"]))["unreadCount"] == 1
    from sqlalchemy import update

    from storage.models import utcnow

    async with client.app[REST_CONTEXT].db.write_session() as session:
        await session.execute(update(Loop).where(Loop.id == uuid.UUID(loop["id"])).values(hidden_at=utcnow()))
    assert (await inbox(client, fan["token"]))["notifications"] == []
    assert (await inbox(client, owner["token"]))["unreadCount"] == 1


async def test_nothing_about_a_comment_hidden_after_it_was_told(client: TestClient) -> None:
    owner, troll, fan, admin = [await sign_up(client) for _ in range(4)]
    await make_admin(client, admin["user"]["id"])
    loop = await create_doc(client, "loops", owner["token"], isPublic=True)
    await comment(client, loop["id"], fan["token"], "kind words")
    other = await create_doc(client, "loops", owner["token"], isPublic=True)
    bad = await comment(client, other["id"], troll["token"], "bad words")
    page = await wait_inbox(client, owner["token"], lambda p: p["unreadCount"] == 2)
    assert {e["data"]["comment"]["body"] for e in page["notifications"]} == {"kind words", "bad words"}
    resp = await client.post(
        f"/api/admin/comments/{bad['id']}/hide", json={"reason": "abuse"}, headers=bearer(admin["token"])
    )
    assert resp.status == 200, await resp.text()
    page = await inbox(client, owner["token"])
    assert [e["data"]["comment"]["body"] for e in page["notifications"]] == ["kind words"]
    assert page["unreadCount"] == 1
    resp = await client.post(f"/api/admin/comments/{bad['id']}/unhide", headers=bearer(admin["token"]))
    assert resp.status == 200, await resp.text()
    assert (await inbox(client, owner["token"]))["unreadCount"] == 2  # shown again once unhidden


async def test_pushed_live_on_the_notifications_socket(client: TestClient) -> None:
    owner, fan = await sign_up(client), await sign_up(client)
    loop = await create_doc(client, "loops", owner["token"], isPublic=True)
    sio = socketio.AsyncClient(reconnection=False)
    pushed: list[dict[str, Any]] = []
    sio.on("notification", pushed.append, namespace="/notifications")
    base = str(client.make_url("/"))
    await sio.connect(
        base, namespaces=["/notifications"], transports=["websocket"], auth={"token": owner["token"]}
    )
    try:
        await comment(client, loop["id"], fan["token"], "live one")
        await comment(client, loop["id"], fan["token"], "live two")
        await eventually(lambda: len(pushed) == 2, timeout=10)
        assert [p["count"] for p in pushed] == [1, 2]
        assert pushed[1]["id"] == pushed[0]["id"]  # the same entry, counted up
        assert pushed[1]["data"]["comment"]["body"] == "live two"
    finally:
        await sio.disconnect()
    refused = socketio.AsyncClient(reconnection=False)
    try:
        await refused.connect(base, namespaces=["/notifications"], transports=["websocket"], auth={})
        raise AssertionError("connected without a token")
    except socketio.exceptions.ConnectionError:
        pass


async def test_content_edits_are_one_event_per_window(client: TestClient, receiver: Receiver) -> None:
    endpoint = await add_endpoint(client, receiver.url, kinds=["loop.content_changed"])
    owner, mate = await named_user(client), await named_user(client)
    loop = await create_doc(client, "loops", owner["token"])
    await add_collaborator(client, "loops", loop["id"], owner["token"], mate["username"], "editor")
    for bpm, who in ((100, owner), (101, mate), (102, owner), (103, mate)):
        resp = await client.patch(f"/api/loops/{loop['id']}", json={"bpm": bpm}, headers=bearer(who["token"]))
        assert resp.status == 200, await resp.text()
    await eventually(lambda: receiver.received, timeout=10)
    await asyncio.sleep(1.5)  # past the next window: no second event for the same edits
    events = receiver.events(secret=endpoint.secret)
    # The 0.5 s windows are aligned on the clock: the four edits fall in one or two of them.
    assert 1 <= len(events) <= 2
    editors = set().union(*(e["data"]["editorIds"] for e in events))
    assert editors == {owner["user"]["id"], mate["user"]["id"]}
    assert all(e["data"]["loop"]["id"] == loop["id"] for e in events)
