"""Comments on loops and songs: who may read, write, edit and delete; bounds; pages."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from rest.context import REST_CONTEXT
from storage.models import Comment
from tests.community import account, create_document, make_admin
from tests.helpers import bearer, expect_error


@pytest.fixture(params=["loops", "songs"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def post_comment(client: TestClient, kind: str, doc_id: str, who: dict[str, Any], **body: Any) -> Any:
    resp = await client.post(
        f"/api/{kind}/{doc_id}/comments", json={"body": "nice", **body}, headers=who["headers"]
    )
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def comment_count(client: TestClient) -> int:
    async with client.app[REST_CONTEXT].db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(Comment)) or 0)


async def test_comment_lifecycle(client: TestClient, kind: str) -> None:
    owner = await account(client, "owner_c", displayName="Owner")
    fan = await account(client, "fan_c", displayName="Fan", avatarUrl="https://x.test/f.png")
    doc = await create_document(client, owner, kind, isPublic=True)
    path = f"/api/{kind}/{doc['id']}/comments"

    first = await post_comment(
        client, kind, doc["id"], fan, body="love the bass", anchor={"bar": 2, "step": 5}
    )
    assert first["author"] == {
        "id": fan["user"]["id"],
        "username": "fan_c",
        "displayName": "Fan",
        "avatarUrl": "https://x.test/f.png",
    }
    assert first["body"] == "love the bass" and first["anchor"] == {"bar": 2, "step": 5}
    assert first["editedAt"] is None and first["createdAt"].endswith("Z") and first["hidden"] is False
    assert first["resourceType"] == kind[:-1] and first["resourceId"] == doc["id"]
    second = await post_comment(client, kind, doc["id"], owner, body="thanks!", anchor={"bar": 0})
    assert second["anchor"] == {"bar": 0}

    listed = await (await client.get(path)).json()  # public document: anyone reads
    assert [c["id"] for c in listed["comments"]] == [first["id"], second["id"]]  # oldest first
    assert listed["total"] == 2 and listed["hasMore"] is False
    page = await (await client.get(f"{path}?limit=1&page=2")).json()
    assert [c["id"] for c in page["comments"]] == [second["id"]] and page["page"] == 2

    edited = await client.patch(
        f"/api/comments/{first['id']}", json={"body": "LOVE it"}, headers=fan["headers"]
    )
    assert edited.status == 200
    edited_body = await edited.json()
    assert edited_body["body"] == "LOVE it" and edited_body["editedAt"] is not None
    await expect_error(
        await client.patch(f"/api/comments/{first['id']}", json={"body": "x"}, headers=owner["headers"]),
        403,
        "forbidden",
    )
    # The document's owner may delete anyone's comment on it.
    resp = await client.delete(f"/api/comments/{first['id']}", headers=owner["headers"])
    assert resp.status == 200 and await resp.json() == {"success": True}
    await expect_error(await client.delete(f"/api/comments/{first['id']}", headers=owner["headers"]), 404)
    # Others may not delete the owner's comment.
    await expect_error(await client.delete(f"/api/comments/{second['id']}", headers=fan["headers"]), 403)
    assert [c["id"] for c in (await (await client.get(path)).json())["comments"]] == [second["id"]]


async def test_who_may_read_and_write(client: TestClient, kind: str) -> None:
    owner, other = await account(client), await account(client)
    doc = await create_document(client, owner, kind)  # private
    path = f"/api/{kind}/{doc['id']}/comments"
    await post_comment(client, kind, doc["id"], owner)
    headers: dict[str, str]
    for headers in ({}, other["headers"]):
        await expect_error(await client.get(path, headers=headers), 404)
        await expect_error(
            await client.post(path, json={"body": "x"}, headers=headers), 401 if not headers else 404
        )
    await expect_error(await client.get(path, headers=bearer("garbage")), 401)
    admin = await account(client)
    await make_admin(client, admin["user"]["id"])
    assert (await (await client.get(path, headers=admin["headers"])).json())["total"] == 1


async def test_share_token_reads_but_never_writes_without_an_account(client: TestClient, kind: str) -> None:
    from storage.models import SharedLink

    owner = await account(client)
    doc = await create_document(client, owner, kind)
    token = uuid.uuid4().hex + uuid.uuid4().hex
    async with client.app[REST_CONTEXT].db.write_session() as session:
        session.add(SharedLink(resource_type=kind[:-1], resource_id=uuid.UUID(doc["id"]), share_token=token))
    await post_comment(client, kind, doc["id"], owner)
    path = f"/api/{kind}/{doc['id']}/comments"
    assert (await (await client.get(f"{path}?shareToken={token}")).json())["total"] == 1
    await expect_error(await client.get(f"{path}?shareToken=wrong"), 404)
    await expect_error(await client.post(f"{path}?shareToken={token}", json={"body": "x"}), 401)
    # With an account, the share token lets them comment (they can read it).
    visitor = await account(client)
    resp = await client.post(f"{path}?shareToken={token}", json={"body": "hi"}, headers=visitor["headers"])
    assert resp.status == 201


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({}, "body is required"),
        ({"body": ""}, "body"),
        ({"body": "   "}, "blank"),
        ({"body": "x" * 2001}, "2000"),
        ({"body": 5}, "body"),
        ({"body": "x", "anchor": {"bar": -1}}, "anchor.bar"),
        ({"body": "x", "anchor": {"bar": 0, "step": 64}}, "anchor.step"),
        ({"body": "x", "anchor": {"step": 1}}, "anchor.bar is required"),
        ({"body": "x", "anchor": {"bar": 1, "row": 1}}, "unknown field"),
        ({"body": "x", "extra": True}, "unknown field 'extra'"),
    ],
)
async def test_bad_comments_are_400_and_change_nothing(
    client: TestClient, body: dict[str, Any], needle: str
) -> None:
    owner = await account(client)
    doc = await create_document(client, owner, isPublic=True)
    resp = await client.post(f"/api/loops/{doc['id']}/comments", json=body, headers=owner["headers"])
    err = await expect_error(resp, 400, "validation_error")
    assert needle in err["error"] + str(err["details"]), err
    assert await comment_count(client) == 0


async def test_bad_edits_and_ids(client: TestClient) -> None:
    owner = await account(client)
    doc = await create_document(client, owner, isPublic=True)
    comment = await post_comment(client, "loops", doc["id"], owner, body="original")
    for body in ({}, {"body": ""}, {"body": "x" * 2001}, {"body": "x", "anchor": {"bar": 1}}):
        await expect_error(
            await client.patch(f"/api/comments/{comment['id']}", json=body, headers=owner["headers"]), 400
        )
    await expect_error(
        await client.patch("/api/comments/not-a-uuid", json={"body": "x"}, headers=owner["headers"]), 400
    )
    await expect_error(await client.delete(f"/api/comments/{uuid.uuid4()}", headers=owner["headers"]), 404)
    await expect_error(await client.get("/api/loops/not-a-uuid/comments"), 400)
    await expect_error(await client.get(f"/api/loops/{uuid.uuid4()}/comments"), 404)
    await expect_error(await client.get(f"/api/loops/{doc['id']}/comments?limit=500"), 400)
    listed = await (await client.get(f"/api/loops/{doc['id']}/comments")).json()
    assert listed["comments"][0]["body"] == "original" and listed["comments"][0]["editedAt"] is None


async def test_deleting_a_document_deletes_its_comments(client: TestClient, kind: str) -> None:
    owner = await account(client)
    doc = await create_document(client, owner, kind, isPublic=True)
    for _ in range(3):
        await post_comment(client, kind, doc["id"], owner)
    other = await create_document(client, owner, kind, isPublic=True)
    await post_comment(client, kind, other["id"], owner)
    assert (await client.delete(f"/api/{kind}/{doc['id']}", headers=owner["headers"])).status == 200
    assert await comment_count(client) == 1
