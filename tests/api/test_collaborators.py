"""Collaborators over HTTP: managing them, bad input, what each role may do (both databases)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.helpers import bearer, expect_error
from tests.sharing_helpers import add_collaborator, create_doc, named_user


@pytest.fixture(params=["loops", "songs"])
def plural(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def people(client: TestClient, plural: str, doc_id: str, token: str) -> list[dict[str, Any]]:
    resp = await client.get(f"/api/{plural}/{doc_id}/collaborators", headers=bearer(token))
    assert resp.status == 200, await resp.text()
    return list((await resp.json())["collaborators"])


async def test_add_list_change_remove(client: TestClient, plural: str) -> None:
    owner, mate = await named_user(client), await named_user(client)
    doc = await create_doc(client, plural, owner["token"])
    url = f"/api/{plural}/{doc['id']}/collaborators"
    resp = await client.post(
        url, json={"username": mate["username"], "role": "editor"}, headers=bearer(owner["token"])
    )
    assert resp.status == 201
    entry = {
        "username": mate["username"],
        "displayName": mate["username"],
        "avatarUrl": None,
        "role": "editor",
    }
    assert await resp.json() == entry
    assert await people(client, plural, doc["id"], owner["token"]) == [entry]
    assert await people(client, plural, doc["id"], mate["token"]) == [entry]  # collaborators see the list
    resp = await client.patch(
        f"{url}/{mate['username']}", json={"role": "viewer"}, headers=bearer(owner["token"])
    )
    assert resp.status == 200 and (await resp.json())["role"] == "viewer"
    resp = await client.delete(f"{url}/{mate['username']}", headers=bearer(owner["token"]))
    assert resp.status == 200
    assert await people(client, plural, doc["id"], owner["token"]) == []
    await expect_error(await client.get(f"/api/{plural}/{doc['id']}", headers=bearer(mate["token"])), 404)


async def test_bad_input_gets_clear_errors_and_changes_nothing(client: TestClient, plural: str) -> None:
    owner, mate = await named_user(client), await named_user(client)
    doc = await create_doc(client, plural, owner["token"])
    url = f"/api/{plural}/{doc['id']}/collaborators"
    headers = bearer(owner["token"])
    await add_collaborator(client, plural, doc["id"], owner["token"], mate["username"], "viewer")
    before = await people(client, plural, doc["id"], owner["token"])
    cases = [
        ({"username": "nobody_here", "role": "editor"}, 404, "user_not_found"),
        ({"username": "nobody-here", "role": "editor"}, 400, "validation_error"),  # never a username
        ({"username": owner["username"], "role": "editor"}, 400, "cannot_add_self"),
        ({"username": mate["username"], "role": "editor"}, 409, "already_collaborator"),
        ({"username": mate["username"], "role": "owner"}, 400, "validation_error"),
        ({"username": "x" * 33, "role": "viewer"}, 400, "validation_error"),
        ({"username": mate["username"]}, 400, "validation_error"),
        ({"username": mate["username"], "role": "viewer", "extra": 1}, 400, "validation_error"),
    ]
    for body, status, code in cases:
        await expect_error(await client.post(url, json=body, headers=headers), status, code)
    await expect_error(
        await client.patch(f"{url}/nobody_here", json={"role": "viewer"}, headers=headers), 404
    )
    await expect_error(await client.patch(f"{url}/{'y' * 40}", json={"role": "viewer"}, headers=headers), 400)
    await expect_error(
        await client.patch(f"{url}/{mate['username']}", json={"role": "admin"}, headers=headers), 400
    )
    await expect_error(
        await client.delete(f"{url}/{owner['username']}", headers=headers), 404, "collaborator_not_found"
    )
    assert await people(client, plural, doc["id"], owner["token"]) == before


async def test_editor_edits_content_but_nothing_else(client: TestClient, plural: str) -> None:
    owner, editor = await named_user(client), await named_user(client)
    doc = await create_doc(client, plural, owner["token"])
    await add_collaborator(client, plural, doc["id"], owner["token"], editor["username"], "editor")
    item = f"/api/{plural}/{doc['id']}"
    resp = await client.patch(item, json={"name": "Team work"}, headers=bearer(editor["token"]))
    assert resp.status == 200 and (await resp.json())["name"] == "Team work"
    await expect_error(
        await client.patch(item, json={"isPublic": True}, headers=bearer(editor["token"])), 403
    )
    await expect_error(
        await client.patch(item, json={"name": "x", "isPublic": True}, headers=bearer(editor["token"])), 403
    )
    await expect_error(await client.delete(item, headers=bearer(editor["token"])), 403)
    await expect_error(await client.post(f"{item}/share", json={}, headers=bearer(editor["token"])), 403)
    got = await (await client.get(item, headers=bearer(owner["token"]))).json()
    assert got["name"] == "Team work" and got["isPublic"] is False


async def test_scope_collaborating_lists_shared_documents(client: TestClient, plural: str) -> None:
    owner, mate = await named_user(client), await named_user(client)
    mine = await create_doc(client, plural, mate["token"])
    theirs = await create_doc(client, plural, owner["token"])
    await create_doc(client, plural, owner["token"])  # not shared with mate
    await add_collaborator(client, plural, theirs["id"], owner["token"], mate["username"], "viewer")
    default = await (await client.get(f"/api/{plural}", headers=bearer(mate["token"]))).json()
    assert [d["id"] for d in default[plural]] == [mine["id"]]
    scoped = await (
        await client.get(f"/api/{plural}?scope=collaborating", headers=bearer(mate["token"]))
    ).json()
    assert [d["id"] for d in scoped[plural]] == [theirs["id"]] and scoped["total"] == 1
    await expect_error(await client.get(f"/api/{plural}?scope=everyone", headers=bearer(mate["token"])), 400)
    # Deleting the document ends the collaboration.
    assert (
        await client.delete(f"/api/{plural}/{theirs['id']}", headers=bearer(owner["token"]))
    ).status == 200
    scoped = await (
        await client.get(f"/api/{plural}?scope=collaborating", headers=bearer(mate["token"]))
    ).json()
    assert scoped["total"] == 0


async def test_public_reader_may_not_list_collaborators(client: TestClient) -> None:
    owner, reader = await named_user(client), await named_user(client)
    doc = await create_doc(client, "loops", owner["token"], isPublic=True)
    resp = await client.get(f"/api/loops/{doc['id']}/collaborators", headers=bearer(reader["token"]))
    await expect_error(resp, 403, "forbidden")
