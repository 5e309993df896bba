"""Permission changes reach open sockets at once: revoked or expired links, removed or
downgraded collaborators. Real server, real Socket.IO clients, both databases."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient
from pycrdt import Map

from tests.helpers import bearer
from tests.realtime.conftest import ClientFactory
from tests.sharing_helpers import add_collaborator, named_user, share


def meta(client: Any) -> Map:
    return client.doc.get("meta", type=Map)


def codes(client: Any) -> list[str]:
    return [e.get("code") for e in client.errors]


async def assert_stays_disconnected(c: Any) -> None:
    await c.wait_for(lambda: not c.connected, timeout=10)
    assert c.disconnect_reason == "server disconnect"  # final: no reconnect loop
    connects = c.connects
    await asyncio.sleep(0.5)
    assert c.connects == connects and not c.connected


async def test_revoking_a_link_disconnects_its_sockets(
    client: TestClient, connect: ClientFactory, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    link = await share(client, "loops", loop["id"], owner["token"])
    kept = await share(client, "loops", loop["id"], owner["token"])
    guest = await connect(loop["id"], share_token=link["shareToken"])
    other_guest = await connect(loop["id"], share_token=kept["shareToken"])
    editor = await connect(loop["id"], token=owner["token"])
    assert guest.role == "viewer"
    resp = await client.delete(f"/api/shares/{link['shareToken']}", headers=bearer(owner["token"]))
    assert resp.status == 200
    await guest.wait_for(lambda: "access_revoked" in codes(guest))
    await assert_stays_disconnected(guest)
    # Holders of another link and the owner are untouched.
    meta(editor)["name"] = "Still live"
    await other_guest.wait_for(lambda: meta(other_guest).get("name") == "Still live")
    assert other_guest.connected and "access_revoked" not in codes(other_guest)


async def test_an_expiring_link_disconnects_its_sockets(
    client: TestClient, connect: ClientFactory, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    link = await share(client, "loops", loop["id"], owner["token"], expires_in=3 / 86400)  # 3 seconds
    guest = await connect(loop["id"], share_token=link["shareToken"])
    assert guest.role == "viewer"
    await guest.wait_for(lambda: "access_revoked" in codes(guest), timeout=20)
    await assert_stays_disconnected(guest)


async def test_removed_collaborator_is_disconnected(
    client: TestClient, connect: ClientFactory, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    mate = await named_user(client)
    await add_collaborator(client, "loops", loop["id"], owner["token"], mate["username"], "editor")
    c = await connect(loop["id"], token=mate["token"])
    assert c.role == "editor"
    meta(c)["name"] = "Written by the editor"
    got = await eventually_json(
        client, f"/api/loops/{loop['id']}", owner["token"], "name", "Written by the editor"
    )
    assert got["name"] == "Written by the editor"
    resp = await client.delete(
        f"/api/loops/{loop['id']}/collaborators/{mate['username']}", headers=bearer(owner["token"])
    )
    assert resp.status == 200
    await c.wait_for(lambda: "access_revoked" in codes(c))
    await assert_stays_disconnected(c)


async def test_downgraded_editor_becomes_read_only_at_once(
    client: TestClient, connect: ClientFactory, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    mate = await named_user(client)
    await add_collaborator(client, "loops", loop["id"], owner["token"], mate["username"], "editor")
    c = await connect(loop["id"], token=mate["token"])
    watcher = await connect(loop["id"], token=owner["token"])
    resp = await client.patch(
        f"/api/loops/{loop['id']}/collaborators/{mate['username']}",
        json={"role": "viewer"},
        headers=bearer(owner["token"]),
    )
    assert resp.status == 200 and (await resp.json())["role"] == "viewer"
    await c.wait_for(lambda: ("role-changed", {"role": "viewer"}) in c.events)
    meta(c)["name"] = "Refused edit"
    await c.wait_for(lambda: "read_only" in codes(c))
    assert c.connected
    # The refused edit reached no one and changed nothing.
    meta(watcher)["color"] = "#123456"
    await c.wait_for(lambda: meta(c).get("color") == "#123456")  # still receives live updates
    assert meta(watcher).get("name") == loop["name"]
    got = await (await client.get(f"/api/loops/{loop['id']}", headers=bearer(owner["token"]))).json()
    assert got["name"] == loop["name"]


async def test_viewer_collaborator_reads_private_document_live_but_cannot_write(
    client: TestClient, connect: ClientFactory, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    mate = await named_user(client)
    await add_collaborator(client, "loops", loop["id"], owner["token"], mate["username"], "viewer")
    c = await connect(loop["id"], token=mate["token"])
    assert c.role == "viewer"
    meta(c)["name"] = "Nope"
    await c.wait_for(lambda: "read_only" in codes(c))
    # Upgraded while connected: the next edit goes through.
    resp = await client.patch(
        f"/api/loops/{loop['id']}/collaborators/{mate['username']}",
        json={"role": "editor"},
        headers=bearer(owner["token"]),
    )
    assert resp.status == 200
    await c.wait_for(lambda: c.role == "editor")


async def eventually_json(client: TestClient, url: str, token: str, field: str, value: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def fetch() -> None:
        found.update(await (await client.get(url, headers=bearer(token))).json())

    async def check() -> bool:
        await fetch()
        return found.get(field) == value

    deadline = asyncio.get_running_loop().time() + 10
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{field} never became {value!r}: {found.get(field)!r}")
        await asyncio.sleep(0.05)
    return found
