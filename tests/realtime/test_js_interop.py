"""Interop with the real npm client: ``yjs`` + ``y-socket.io``'s SocketIOProvider, unchanged.

Installed by the test command (``npm ci`` from the committed lockfile). A missing Node or
missing packages fail these tests: they never skip.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient
from pycrdt import Map

from music.reading import loop_doc_to_content
from music.schema import step_key
from tests.helpers import bearer, eventually, sign_up
from tests.js_client import JsClient
from tests.realtime.conftest import ClientFactory


async def dump_until(js: JsClient, predicate: Any, timeout: float = 10.0) -> dict[str, Any]:
    """Poll the JS client's document until ``predicate(dump)`` holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        dump = await js.dump()
        if predicate(dump):
            return dump
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"JS document never matched: {dump}")
        await asyncio.sleep(0.05)


async def test_js_and_python_clients_converge_with_rest(
    client: TestClient, base_url: str, connect: ClientFactory, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    room = f"loop:{loop['id']}"
    auth = {"token": owner["token"]}
    async with (
        JsClient.start(base_url, room, auth=auth) as js1,
        JsClient.start(base_url, room, auth=auth) as js2,
    ):
        await js1.wait_event("synced")
        await js2.wait_event("synced")
        py = await connect(loop["id"], token=owner["token"])

        # Concurrent edits from three clients: different cells, and one cell toggled by all.
        py_steps = py.doc.get("steps", type=Map)
        shared: dict[str, Any] = {"step": 8, "soundId": "drum-snare", "velocity": 0.8}
        await asyncio.gather(
            js1.command("toggle-step", step=1, soundId="drum-kick", on=True),
            js2.command("set-chord", bar=4, chord="F"),
            js1.command("toggle-step", on=True, **shared),
            js2.command("toggle-step", on=True, **shared),
        )
        py_steps[step_key({"step": 2, "soundId": "drum-hihat"})] = Map(
            {"step": 2, "soundId": "drum-hihat", "velocity": 0.5}
        )
        py_steps[step_key(shared)] = Map(dict(shared))
        py.doc.get("meta", type=Map)["name"] = "Made by three clients"
        await js2.command("set-meta", key="bpm", value=101)

        def expected(content: dict[str, Any]) -> bool:
            cells = {(s["step"], s["soundId"]) for s in content["iconSequence"]}
            return (
                {(1, "drum-kick"), (2, "drum-hihat"), (8, "drum-snare")} <= cells
                and content["name"] == "Made by three clients"
                and content["bpm"] == 101
                and {"bar": 4, "chord": "F"} in content["chordProgression"]
            )

        await eventually(lambda: expected(loop_doc_to_content(py.doc)), timeout=10)
        python_view = loop_doc_to_content(py.doc)
        assert [s["step"] for s in python_view["iconSequence"]].count(8) == 1

        # Both JS documents hold exactly the same data as the Python one and the server.
        for js in (js1, js2):
            await dump_until(
                js,
                lambda d: (
                    d["meta"].get("name") == "Made by three clients"
                    and set(d["steps"]) == set(py_steps.keys())
                ),
            )
        rest = await (await client.get(f"/api/loops/{loop['id']}", headers=bearer(owner["token"]))).json()
        assert rest["iconSequence"] == python_view["iconSequence"]
        assert rest["chordProgression"] == python_view["chordProgression"]
        assert rest["name"] == python_view["name"] and rest["bpm"] == 101


async def test_js_viewer_is_refused_writes_and_sees_presence(
    client: TestClient, base_url: str, connect: ClientFactory, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    await client.patch(f"/api/loops/{loop['id']}", json={"isPublic": True}, headers=bearer(owner["token"]))
    stranger = await sign_up(client)
    editor = await connect(loop["id"], token=owner["token"])
    editor.set_awareness({"user": {"name": "Owner"}, "cursor": {"bar": 0, "step": 3, "row": 1}})
    async with JsClient.start(base_url, f"loop:{loop['id']}", auth={"token": stranger["token"]}) as js:
        await js.wait_event("synced")
        await js.wait_event("role-changed", lambda e: e["role"] == "viewer")
        await js.wait_event("awareness", lambda e: str(editor.client_id) in {str(k) for k in e["states"]})
        await js.command("set-meta", key="name", value="Vandalized")
        await js.wait_event("error", lambda e: e["code"] == "read_only")
        editor.doc.get("meta", type=Map)["bpm"] = 77
        await eventually(lambda: editor.remote_updates == 0)  # nothing arrives from the viewer
        await dump_until(js, lambda d: d["meta"].get("bpm") == 77)
    got = await (await client.get(f"/api/loops/{loop['id']}")).json()
    assert got["name"] == loop["name"]
