"""The binary document API: GET a loop's or song's Yjs state (whole, or a diff against a state
vector; ETag on the state vector), POST an update as the caller with the checks of a live edit.
Real server, both databases."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from pycrdt import Doc, Map

from music.kinds import DocKind
from rest.context import REST_CONTEXT
from tests.helpers import SONG, bearer, eventually, expect_error, sign_up
from tests.sharing_helpers import share
from tests.ywebsocket_client import YwsClient

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "yjs_edit.py"
OCTETS = {"Content-Type": "application/octet-stream"}


async def fetch_doc(client: TestClient, path: str, headers: dict[str, str]) -> tuple[Doc[Any], str]:
    resp = await client.get(path, headers=headers)
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "application/octet-stream"
    doc: Doc[Any] = Doc()
    doc.apply_update(await resp.read())
    return doc, resp.headers["ETag"]


async def test_read_whole_diff_and_etag(
    client: TestClient, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    path, auth = f"/api/loops/{loop['id']}/yjs", bearer(owner["token"])
    doc, etag = await fetch_doc(client, path, auth)
    assert doc.get("meta", type=Map)["name"] == loop["name"]

    resp = await client.get(path, headers={**auth, "If-None-Match": etag})
    assert resp.status == 304 and resp.headers["ETag"] == etag and not await resp.read()

    # Someone edits: the ETag moves, and a diff against our state carries only the change.
    resp = await client.patch(f"/api/loops/{loop['id']}", json={"name": "Renamed"}, headers=auth)
    assert resp.status == 200
    sv = base64.urlsafe_b64encode(doc.get_state()).decode().rstrip("=")
    resp = await client.get(path, params={"stateVector": sv}, headers={**auth, "If-None-Match": etag})
    assert resp.status == 200 and resp.headers["ETag"] != etag
    diff = await resp.read()
    whole = await (await client.get(path, headers=auth)).read()
    assert len(diff) < len(whole)
    doc.apply_update(diff)
    assert doc.get("meta", type=Map)["name"] == "Renamed"


async def test_bad_state_vectors_are_400(
    client: TestClient, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    path, auth = f"/api/loops/{loop['id']}/yjs", bearer(owner["token"])
    for bogus, code in (
        ("%%%", "validation_error"),
        (base64.b64encode(b"\xff" * 12).decode(), "malformed_message"),
    ):
        await expect_error(await client.get(path, params={"stateVector": bogus}, headers=auth), 400, code)


async def test_post_applies_as_the_caller_and_live_clients_see_it(
    client: TestClient, base_url: str, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    path, auth = f"/api/loops/{loop['id']}/yjs", bearer(owner["token"])
    live = await YwsClient(base_url, f"loop:{loop['id']}", token=owner["token"]).connect()
    try:
        doc, _ = await fetch_doc(client, path, auth)
        before = doc.get_state()
        doc.get("meta", type=Map)["name"] = "Posted as Yjs"
        resp = await client.post(path, data=doc.get_update(before), headers={**auth, **OCTETS})
        assert resp.status == 200, await resp.text()
        assert base64.b64decode((await resp.json())["stateVector"]) == doc.get_state()
        await eventually(lambda: live.meta().get("name") == "Posted as Yjs")
        got = await (await client.get(f"/api/loops/{loop['id']}", headers=auth)).json()
        assert got["name"] == "Posted as Yjs"
    finally:
        await live.close()


async def test_post_refusals(client: TestClient, owner: dict[str, Any], loop: dict[str, Any]) -> None:
    path, auth = f"/api/loops/{loop['id']}/yjs", bearer(owner["token"])
    doc, _ = await fetch_doc(client, path, auth)
    before = doc.get_state()
    with doc.transaction():  # more meta keys than REST allows: refused and rolled back
        for i in range(1000):
            doc.get("meta", type=Map)[f"key{i}"] = i
    too_much = doc.get_update(before)
    await expect_error(
        await client.post(path, data=too_much, headers={**auth, **OCTETS}), 413, "content_too_large"
    )
    fresh, _ = await fetch_doc(client, path, auth)
    assert "key1" not in fresh.get("meta", type=Map)

    await expect_error(await client.post(path, data=b"\x01\x02junk", headers={**auth, **OCTETS}), 400)
    await expect_error(
        await client.post(path, data=too_much, headers={**auth, "Content-Type": "text/plain"}), 415
    )
    await expect_error(await client.post(path, data=b"", headers={**auth, **OCTETS}), 400)

    # An update that builds on changes the server never saw.
    other: Doc[Any] = Doc()
    other.get("meta", type=Map)["a"] = 1
    base = other.get_state()
    other.get("meta", type=Map)["b"] = 2
    await expect_error(
        await client.post(path, data=other.get_update(base), headers={**auth, **OCTETS}),
        409,
        "missing_dependencies",
    )

    # A viewer (share link) reads but may not write; a stranger sees nothing.
    link = await share(client, "loops", loop["id"], owner["token"])
    resp = await client.get(path, params={"shareToken": link["shareToken"]})
    assert resp.status == 200
    small = fresh.get_update(fresh.get_state())
    fresh.get("meta", type=Map)["name"] = "viewer edit"
    viewer_update = fresh.get_update(before)
    await expect_error(
        await client.post(
            path, params={"shareToken": link["shareToken"]}, data=viewer_update, headers=OCTETS
        ),
        403,
        "read_only",
    )
    stranger = bearer((await sign_up(client))["token"])
    await expect_error(await client.get(path, headers=stranger), 404)
    await expect_error(
        await client.post(path, data=small or b"\x00\x00", headers={**stranger, **OCTETS}), 404
    )
    await expect_error(await client.get(path), 404)


async def test_a_stranger_cannot_make_the_server_load_a_document(
    client: TestClient, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    documents = client.app[REST_CONTEXT].documents
    doc_id = uuid.UUID(loop["id"])
    assert documents.loaded(DocKind.LOOP, doc_id) is None  # created over REST: not in memory
    path = f"/api/loops/{loop['id']}/yjs"
    update = Doc().get_update()  # an empty update: would be applied if the caller could write
    stranger = bearer((await sign_up(client))["token"])
    for who in ({}, stranger, {"Authorization": "Bearer junk"}):
        resp = await client.get(path, headers=who)
        assert resp.status in (401, 404)
        resp = await client.post(path, data=update, headers={**who, **OCTETS})
        assert resp.status in (401, 404)
    resp = await client.get(path, params={"shareToken": "no-such-link"})
    assert resp.status == 404
    assert documents.loaded(DocKind.LOOP, doc_id) is None and not documents.rooms
    # The owner's read loads it (what the check above would see if a stranger's did).
    assert (await client.get(path, headers=bearer(owner["token"]))).status == 200
    assert documents.loaded(DocKind.LOOP, doc_id) is not None


async def test_songs_too(client: TestClient, owner: dict[str, Any]) -> None:
    auth = bearer(owner["token"])
    resp = await client.post("/api/songs", json=SONG, headers=auth)
    song = await resp.json()
    path = f"/api/songs/{song['id']}/yjs"
    doc, _ = await fetch_doc(client, path, auth)
    before = doc.get_state()
    doc.get("meta", type=Map)["name"] = "Song via Yjs"
    resp = await client.post(path, data=doc.get_update(before), headers={**auth, **OCTETS})
    assert resp.status == 200
    got = await (await client.get(f"/api/songs/{song['id']}", headers=auth)).json()
    assert got["name"] == "Song via Yjs"


async def test_the_documented_example_runs(
    client: TestClient, base_url: str, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        base_url,
        loop["id"],
        owner["token"],
        "Edited by the example",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert f"read {loop['name']!r}" in out.decode()
    got = await (await client.get(f"/api/loops/{loop['id']}", headers=bearer(owner["token"]))).json()
    assert got["name"] == "Edited by the example"
