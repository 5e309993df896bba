"""What moderation hides stays hidden live (issue 25, finding 5): ``comment`` events of a
hidden comment, or of a hidden account, reach only the sockets of those REST shows it to
(its author and admins), on this instance and on the others."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from aiohttp.test_utils import TestClient

from bus import MemoryHub
from loadtest.client import CollabClient
from music.kinds import DocKind
from realtime.rooms import Audience
from tests.community import account, create_document, make_admin
from tests.helpers import eventually
from tests.realtime.conftest import ClientFactory
from tests.realtime.test_cluster import instance, new_loop


def comment_events(c: CollabClient) -> list[dict[str, Any]]:
    return [payload for event, payload in c.events if event == "comment"]


async def until(c: CollabClient, check: Callable[[CollabClient], bool]) -> None:
    await c.wait_for(lambda: check(c), timeout=10)


def bodies(c: CollabClient, action: str) -> list[str]:
    return [e["comment"]["body"] for e in comment_events(c) if e["action"] == action]


async def fenced(client: TestClient, loop_id: str, poster: dict[str, Any], *watchers: CollabClient) -> None:
    """Post a visible comment and wait until every watcher has it: whatever the server sent
    them before (from the same room, in order) has arrived by then."""
    fence = f"fence-{uuid.uuid4().hex[:8]}"
    resp = await client.post(
        f"/api/loops/{loop_id}/comments", json={"body": fence}, headers=poster["headers"]
    )
    assert resp.status == 201, await resp.text()
    for w in watchers:
        await until(w, lambda w: fence in bodies(w, "created"))


async def rest_bodies(client: TestClient, loop_id: str, who: dict[str, Any]) -> list[str]:
    resp = await client.get(f"/api/loops/{loop_id}/comments", headers=who["headers"])
    assert resp.status == 200
    return [c["body"] for c in (await resp.json())["comments"]]


async def test_a_hidden_comment_edited_by_its_author_reaches_only_its_author_and_admins(
    client: TestClient, connect: ClientFactory
) -> None:
    owner, author, bystander, admin = [await account(client) for _ in range(4)]
    await make_admin(client, admin["user"]["id"])
    loop = await create_document(client, owner, isPublic=True)
    sockets = {
        name: await connect(loop["id"], token=who["token"])
        for name, who in {"owner": owner, "author": author, "bystander": bystander, "admin": admin}.items()
    }
    resp = await client.post(
        f"/api/loops/{loop['id']}/comments", json={"body": "rude"}, headers=author["headers"]
    )
    comment = await resp.json()
    for c in sockets.values():
        await until(c, lambda c: bodies(c, "created") == ["rude"])

    resp = await client.post(
        f"/api/admin/comments/{comment['id']}/hide", json={"reason": "abuse"}, headers=admin["headers"]
    )
    assert resp.status == 200
    for name in ("owner", "bystander"):  # it disappears for them, the reason unsaid
        c = sockets[name]
        await until(c, lambda c: bodies(c, "deleted") == ["rude"])
        gone = next(e for e in comment_events(c) if e["action"] == "deleted")["comment"]
        assert gone["hidden"] is False and gone["hiddenReason"] is None
    for name in ("author", "admin"):  # still theirs to see, now marked hidden
        c = sockets[name]
        await until(c, lambda c: len(bodies(c, "edited")) == 1)
        edited = next(e for e in comment_events(c) if e["action"] == "edited")["comment"]
        assert edited["hidden"] is True and edited["hiddenReason"] == "abuse"

    # The author edits the hidden comment, then deletes it.
    resp = await client.patch(
        f"/api/comments/{comment['id']}", json={"body": "ruder"}, headers=author["headers"]
    )
    assert resp.status == 200
    for name in ("author", "admin"):
        c = sockets[name]
        await until(c, lambda c: "ruder" in bodies(c, "edited"))
    assert (await client.delete(f"/api/comments/{comment['id']}", headers=author["headers"])).status == 200
    for name in ("author", "admin"):
        c = sockets[name]
        await until(c, lambda c: "ruder" in bodies(c, "deleted"))

    await fenced(client, loop["id"], owner, *sockets.values())
    for name in ("owner", "bystander"):
        seen = [e["comment"]["body"] for e in comment_events(sockets[name])]
        assert "ruder" not in seen, (name, comment_events(sockets[name]))
        assert not [e for e in comment_events(sockets[name]) if e["action"] == "edited"]


async def test_a_hidden_accounts_new_comments_reach_only_it_and_admins(
    client: TestClient, connect: ClientFactory
) -> None:
    owner, troll, bystander, admin = [await account(client) for _ in range(4)]
    await make_admin(client, admin["user"]["id"])
    loop = await create_document(client, owner, isPublic=True)
    resp = await client.post(
        f"/api/admin/users/{troll['user']['id']}/hide", json={"reason": "spam"}, headers=admin["headers"]
    )
    assert resp.status == 200
    watchers = {
        name: await connect(loop["id"], token=who["token"])
        for name, who in {"owner": owner, "troll": troll, "bystander": bystander, "admin": admin}.items()
    }
    resp = await client.post(
        f"/api/loops/{loop['id']}/comments", json={"body": "spam!"}, headers=troll["headers"]
    )
    assert resp.status == 201
    for name in ("troll", "admin"):
        c = watchers[name]
        await until(c, lambda c: bodies(c, "created") == ["spam!"])
    await fenced(client, loop["id"], owner, *watchers.values())
    for name in ("owner", "bystander"):
        assert "spam!" not in bodies(watchers[name], "created"), comment_events(watchers[name])
        # Live and REST agree.
        assert "spam!" not in await rest_bodies(client, loop["id"], owner if name == "owner" else bystander)
    assert "spam!" in await rest_bodies(client, loop["id"], admin)

    # Unhiding the account makes new comments public again.
    await client.post(f"/api/admin/users/{troll['user']['id']}/unhide", headers=admin["headers"])
    await client.post(f"/api/loops/{loop['id']}/comments", json={"body": "sorry"}, headers=troll["headers"])
    await watchers["bystander"].wait_for(
        lambda: "sorry" in bodies(watchers["bystander"], "created"), timeout=10
    )


async def test_unhiding_a_comment_brings_it_back_to_everyone(
    client: TestClient, connect: ClientFactory
) -> None:
    owner, author, admin = [await account(client) for _ in range(3)]
    await make_admin(client, admin["user"]["id"])
    loop = await create_document(client, owner, isPublic=True)
    comment = await (
        await client.post(
            f"/api/loops/{loop['id']}/comments", json={"body": "fine"}, headers=author["headers"]
        )
    ).json()
    await client.post(
        f"/api/admin/comments/{comment['id']}/hide", json={"reason": "oops"}, headers=admin["headers"]
    )
    viewer = await connect(loop["id"], token=owner["token"])
    mine = await connect(loop["id"], token=author["token"])
    await client.post(f"/api/admin/comments/{comment['id']}/unhide", headers=admin["headers"])
    await viewer.wait_for(lambda: bodies(viewer, "created") == ["fine"], timeout=10)
    await mine.wait_for(lambda: bodies(mine, "edited") == ["fine"], timeout=10)
    assert [e["comment"]["hidden"] for e in comment_events(mine)] == [False]
    assert bodies(mine, "created") == []  # the author had it all along: no duplicate


async def test_the_audience_is_applied_by_every_instance(database_url: str) -> None:
    """A named event with an audience, published by one instance, reaches on another only
    the sockets it admits (two document services on one database and one bus)."""
    doc_id = await new_loop(database_url)
    hub = MemoryHub()
    async with instance(database_url, hub) as a, instance(database_url, hub) as b:
        _room_a, _local = await a.join(doc_id, "local")
        _room_b, allowed = await b.join(doc_id, "allowed")
        _room_b, _other = await b.join(doc_id, "other")
        _room_b, guest = await b.join(doc_id, "guest")
        guest.user_id = None  # a share-link guest: never in an audience's users
        assert allowed.user_id is not None
        only = Audience(frozenset({allowed.user_id}), only=True)
        others = Audience(frozenset({allowed.user_id}), only=False)
        await a.service.broadcast(DocKind.LOOP, doc_id, "comment", {"n": 1}, only)
        await a.service.broadcast(DocKind.LOOP, doc_id, "comment", {"n": 2}, others)
        await a.service.broadcast(DocKind.LOOP, doc_id, "comment", {"n": 3})

        def got(inst: Any, sid: str) -> list[int]:
            return [data["n"] for to, event, data in inst.transport.sent if to == sid and event == "comment"]

        await eventually(lambda: got(b, "other") == [2, 3] and got(b, "allowed") == [1, 3], timeout=10)
        assert got(b, "guest") == [2, 3]
        assert got(a, "local") == [2, 3]
