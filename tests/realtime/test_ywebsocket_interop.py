"""Interop with the stock npm clients of both wires in one room: ``y-websocket``'s
WebsocketProvider (default options) and ``y-socket.io``'s SocketIOProvider, unchanged, with
a Python client beside them. Both databases; a missing Node or package fails, never skips."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient
from pycrdt import Map

from musicplayground.observability import METRICS
from realtime.ywebsocket.close_codes import CloseCode
from tests.helpers import bearer, eventually
from tests.js_client import JsClient
from tests.realtime.conftest import ClientFactory
from tests.sharing_helpers import add_collaborator, named_user, share


async def dump_until(js: JsClient, predicate: Any, timeout: float = 10.0) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        dump = await js.dump()
        if predicate(dump):
            return dump
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"JS document never matched: {dump}")
        await asyncio.sleep(0.05)


async def test_stock_clients_of_both_wires_edit_one_room(
    client: TestClient, base_url: str, connect: ClientFactory, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    room, auth = f"loop:{loop['id']}", {"token": owner["token"]}
    async with (
        JsClient.start(base_url, room, auth=auth, wire="y-websocket") as yws,
        JsClient.start(base_url, room, auth=auth) as ysio,
    ):
        await yws.wait_event("synced")
        await ysio.wait_event("synced")
        py = await connect(loop["id"], token=owner["token"])
        await asyncio.gather(
            yws.command("toggle-step", step=1, soundId="drum-kick", on=True),
            ysio.command("set-chord", bar=4, chord="F"),
            yws.command("set-meta", key="name", value="Two wires, one room"),
        )

        def converged(dump: dict[str, Any]) -> bool:
            return (
                dump["meta"].get("name") == "Two wires, one room"
                and dump["chords"].get("4", {}).get("chord") == "F"
                and any(
                    s.get("soundId") == "drum-kick" and s.get("step") == 1 for s in dump["steps"].values()
                )
            )

        first = await dump_until(yws, converged)
        second = await dump_until(ysio, converged)
        assert first == second
        resp = await client.get(f"/api/loops/{loop['id']}", headers=bearer(owner["token"]))
        body = await resp.json()
        assert body["name"] == "Two wires, one room"
        assert any(c["bar"] == 4 and c["chord"] == "F" for c in body["chordProgression"])
        await eventually(lambda: py.doc.get("meta", type=Map).get("name") == "Two wires, one room")

        # Awareness crosses the wires both ways.
        await yws.command("awareness", state={"user": {"name": "yws"}})
        await ysio.command("awareness", state={"user": {"name": "ysio"}})
        names = {"yws", "ysio"}
        for js in (yws, ysio):
            await js.wait_event(
                "awareness",
                lambda e: {s.get("user", {}).get("name") for s in e["states"].values()} >= names,
            )


async def test_stock_y_websocket_viewer_and_revocation(
    client: TestClient, base_url: str, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    room = f"loop:{loop['id']}"
    link = await share(client, "loops", loop["id"], owner["token"])
    mate = await named_user(client)
    await add_collaborator(client, "loops", loop["id"], owner["token"], mate["username"], "editor")
    async with (
        JsClient.start(base_url, room, auth={"shareToken": link["shareToken"]}, wire="y-websocket") as viewer,
        JsClient.start(base_url, room, auth={"token": mate["token"]}, wire="y-websocket") as editor,
    ):
        await viewer.wait_event("synced")
        await editor.wait_event("synced")
        await editor.command("set-meta", key="name", value="By the editor")
        await dump_until(viewer, lambda d: d["meta"].get("name") == "By the editor")

        # A viewer's edit: refused, the socket closed with 4403, and the stock client stops.
        await viewer.command("set-meta", key="name", value="By the viewer")
        closed = await viewer.wait_event("closed-for-good")
        assert (closed["code"], closed["reason"]) == (CloseCode.FORBIDDEN, "read_only")
        await viewer.wait_event("permission-denied")

        # Revoking the editor: 4409, no reconnect loop.
        resp = await client.delete(
            f"/api/loops/{loop['id']}/collaborators/{mate['username']}", headers=bearer(owner["token"])
        )
        assert resp.status == 200
        closed = await editor.wait_event("closed-for-good")
        assert (closed["code"], closed["reason"]) == (CloseCode.REVOKED, "access_revoked")
        connects = sum(1 for e in editor.events if e["event"] == "connect")
        await asyncio.sleep(1.0)  # past the provider's first backoff steps
        assert sum(1 for e in editor.events if e["event"] == "connect") == connects

        resp = await client.get(f"/api/loops/{loop['id']}", headers=bearer(owner["token"]))
        assert (await resp.json())["name"] == "By the editor"


async def test_a_lone_idle_stock_client_stays_connected(
    client: TestClient, base_url: str, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    # The provider drops a socket that heard nothing for 30 s (messageReconnectTimeout); alone
    # and idle, it hears only the echo of its own awareness renewal (every 15 s).
    ywebsockets = client.app[METRICS].components.ywebsockets
    room, auth = f"loop:{loop['id']}", {"token": owner["token"]}
    async with JsClient.start(base_url, room, auth=auth, wire="y-websocket") as yws:
        await yws.wait_event("synced")
        connections = set(ywebsockets.connections)  # by session id: a reconnect gets a new one
        assert len(connections) == 1
        await asyncio.sleep(35)
        assert set(ywebsockets.connections) == connections
        assert [e for e in yws.events if e["event"] in ("close", "disconnect")] == []
