"""The y-websocket wire across two real ``musicplayground serve`` processes on one Postgres
and one Redis: the stock ``y-websocket`` client on one instance and the stock ``y-socket.io``
client on the other edit one room, share awareness, and a revocation made on one instance
closes the y-websocket socket on the other with 4409; the binary document API of either
instance sees every edit."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Map

from realtime.ywebsocket.close_codes import CloseCode
from tests.js_client import JsClient
from tests.process.test_cluster_process import account, cluster_env, get, http, instances, new_loop

__all__ = ["cluster_env"]  # the fixture, imported for the tests below
pytestmark = pytest.mark.timeout(240)


async def dump_until(js: JsClient, predicate: Any, timeout: float = 15.0) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        dump = await js.dump()
        if predicate(dump):
            return dump
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"JS document never matched: {dump}")
        await asyncio.sleep(0.05)


async def test_stock_clients_of_both_wires_on_two_instances(
    cluster_env: dict[str, str], tmp_path: Path
) -> None:
    with instances(cluster_env, tmp_path) as (a, b):
        token, headers = account(a.url)
        loop_id = new_loop(a.url, headers, isPublic=True)
        reader_token, _ = account(b.url)
        room, auth = f"loop:{loop_id}", {"token": token}
        async with (
            JsClient.start(a.url, room, auth=auth, wire="y-websocket") as yws,
            JsClient.start(b.url, room, auth=auth) as ysio,
            JsClient.start(b.url, room, auth={"token": reader_token}, wire="y-websocket") as reader,
        ):
            for js in (yws, ysio, reader):
                await js.wait_event("synced")
            await yws.command("set-meta", key="name", value="From instance A")
            await ysio.command("set-chord", bar=8, chord="Am")

            def both(dump: dict[str, Any]) -> bool:
                return dump["meta"].get("name") == "From instance A" and "8" in dump["chords"]

            for js in (yws, ysio, reader):
                await dump_until(js, both)

            # Awareness crosses instances and wires.
            await yws.command("awareness", state={"user": {"name": "on-a"}})
            await ysio.wait_event(
                "awareness",
                lambda e: any(s.get("user", {}).get("name") == "on-a" for s in e["states"].values()),
            )

            # The binary document API of instance B holds A's edit.
            resp = await get(f"{b.url}/api/loops/{loop_id}/yjs", headers)
            assert resp.status_code == 200
            doc: Doc[Any] = Doc()
            doc.apply_update(resp.content)
            assert doc.get("meta", type=Map)["name"] == "From instance A"

            # Made private on A: the public reader's y-websocket socket on B closes for good.
            resp = await http(
                "PATCH", f"{a.url}/api/loops/{loop_id}", json={"isPublic": False}, headers=headers
            )
            assert resp.status_code == 200
            closed = await reader.wait_event("closed-for-good", timeout=15)
            assert (closed["code"], closed["reason"]) == (CloseCode.REVOKED, "access_revoked")
            assert not any(e["event"] == "close" for e in yws.events)  # the owner stays
