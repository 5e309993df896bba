"""Live collaboration through the real server: sync, relay, roles, presence, REST as the same truth."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pycrdt import Map

from loadtest.client import CollabConnectionRefused
from music.reading import loop_doc_to_content
from music.schema import step_key
from tests.helpers import bearer, eventually, sign_up
from tests.realtime.conftest import ClientFactory


def steps(client: Any) -> Map:
    return client.doc.get("steps", type=Map)


def meta(client: Any) -> Map:
    return client.doc.get("meta", type=Map)


async def test_joiner_receives_document_created_over_rest(
    connect: ClientFactory, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    c = await connect(loop["id"], token=owner["token"])
    content = loop_doc_to_content(c.doc)
    assert content["name"] == loop["name"]
    assert content["chordProgression"] == loop["chordProgression"]
    assert content["iconSequence"] == loop["iconSequence"]
    assert c.role == "owner"


async def test_edits_reach_other_clients_and_rest(
    client: TestClient, connect: ClientFactory, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    a = await connect(loop["id"], token=owner["token"])
    b = await connect(loop["id"], token=owner["token"])
    meta(a)["name"] = "Edited live"
    await b.wait_for(lambda: meta(b).get("name") == "Edited live")
    got = await (await client.get(f"/api/loops/{loop['id']}", headers=bearer(owner["token"]))).json()
    assert got["name"] == "Edited live"
    # The sender never gets its own update back.
    await asyncio.sleep(0.2)
    assert a.remote_updates == 0


async def test_rest_patch_reaches_live_clients(
    client: TestClient, connect: ClientFactory, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    c = await connect(loop["id"], token=owner["token"])
    resp = await client.patch(
        f"/api/loops/{loop['id']}",
        json={"chordProgression": [{"bar": 0, "chord": "Am"}], "name": "Patched"},
        headers=bearer(owner["token"]),
    )
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["name"] == "Patched" and body["chordProgression"] == [{"bar": 0, "chord": "Am"}]
    await c.wait_for(lambda: meta(c).get("name") == "Patched")
    assert loop_doc_to_content(c.doc)["chordProgression"] == [{"bar": 0, "chord": "Am"}]


async def test_concurrent_toggles_of_one_cell_make_one_step(
    client: TestClient, connect: ClientFactory, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    a = await connect(loop["id"], token=owner["token"])
    b = await connect(loop["id"], token=owner["token"])
    cell = {"step": 12, "soundId": "drum-snare", "velocity": 0.8}
    key = step_key(cell)
    steps(a)[key] = Map(cell)
    steps(b)[key] = Map(cell)
    # State vectors may list clients in any order, so compare what the documents say.
    await eventually(
        lambda: (
            a.remote_updates >= 1
            and b.remote_updates >= 1
            and loop_doc_to_content(a.doc) == loop_doc_to_content(b.doc)
        )
    )
    got = await (await client.get(f"/api/loops/{loop['id']}", headers=bearer(owner["token"]))).json()
    assert [s for s in got["iconSequence"] if s["step"] == 12] == [
        {"step": 12, "soundId": "drum-snare", "velocity": 0.8}
    ]


async def test_viewers_receive_but_cannot_write(
    client: TestClient, connect: ClientFactory, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    headers = bearer(owner["token"])
    assert (
        await client.patch(f"/api/loops/{loop['id']}", json={"isPublic": True}, headers=headers)
    ).status == 200
    stranger = await sign_up(client)
    viewer = await connect(loop["id"], token=stranger["token"])
    editor = await connect(loop["id"], token=owner["token"])
    assert viewer.role == "viewer"
    meta(viewer)["name"] = "Vandalized"
    await viewer.wait_for(lambda: any(e["code"] == "read_only" for e in viewer.errors))
    meta(editor)["bpm"] = 99
    await viewer.wait_for(lambda: meta(viewer).get("bpm") == 99)
    got = await (await client.get(f"/api/loops/{loop['id']}")).json()
    assert got["name"] == loop["name"] and got["bpm"] == 99
    assert meta(editor)["name"] == loop["name"]


@pytest.mark.parametrize(
    ("auth", "needle"),
    [({}, "authentication required"), ({"token": "garbage"}, "invalid token")],
)
async def test_bad_handshakes_are_refused(
    connect: ClientFactory, loop: dict[str, Any], auth: dict[str, str], needle: str
) -> None:
    with pytest.raises(CollabConnectionRefused, match=needle):
        await connect(loop["id"], **auth)


async def test_an_expired_token_is_refused_as_expired_not_invalid(
    connect: ClientFactory, loop: dict[str, Any], owner: dict[str, Any]
) -> None:
    import time

    import jwt

    from identity.tokens import KEY_ID
    from tests.conftest import TEST_SECRET

    claims = jwt.decode(owner["token"], options={"verify_signature": False})
    claims["exp"] = int(time.time()) - 10
    expired = jwt.encode(claims, TEST_SECRET, algorithm="HS256", headers={"kid": KEY_ID})
    with pytest.raises(CollabConnectionRefused, match=r"^token expired: ") as refused:
        await connect(loop["id"], token=expired)
    assert refused.value.data == {"code": "token_expired"}
    with pytest.raises(CollabConnectionRefused, match=r"^invalid token: ") as refused:
        await connect(loop["id"], token="garbage")
    assert refused.value.data == {"code": "invalid_token"}


async def test_private_or_unknown_documents_are_refused(
    client: TestClient, connect: ClientFactory, loop: dict[str, Any]
) -> None:
    import uuid

    stranger = await sign_up(client)
    with pytest.raises(CollabConnectionRefused, match="not found"):
        await connect(loop["id"], token=stranger["token"])
    with pytest.raises(CollabConnectionRefused, match="not found"):
        await connect(str(uuid.uuid4()), token=stranger["token"])


async def test_presence_lists_members_from_tokens(
    client: TestClient, connect: ClientFactory, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    a = await connect(loop["id"], token=owner["token"])
    await connect(loop["id"], token=owner["token"])
    await a.wait_for(lambda: a.presence and a.presence[0]["connections"] == 2)
    assert a.presence is not None
    assert a.presence[0]["userId"] == owner["user"]["id"] and a.presence[0]["role"] == "owner"
    resp = await client.get(f"/api/loops/{loop['id']}/presence", headers=bearer(owner["token"]))
    assert (await resp.json())["members"] == a.presence


async def test_awareness_is_relayed_kept_and_removed(
    connect: ClientFactory, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    a = await connect(loop["id"], token=owner["token"])
    a.set_awareness({"user": {"name": "A"}, "cursor": {"bar": 1, "step": 2, "row": 0}})
    b = await connect(loop["id"], token=owner["token"])
    await b.wait_for(lambda: a.client_id in b.remote_awareness())  # late joiner sees A
    b.set_awareness({"user": {"name": "B"}})
    await a.wait_for(lambda: b.client_id in a.remote_awareness())
    await b.close()
    await a.wait_for(lambda: b.client_id not in a.remote_awareness())


async def test_deleting_the_document_disconnects_with_a_reason(
    client: TestClient, connect: ClientFactory, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    c = await connect(loop["id"], token=owner["token"])
    resp = await client.delete(f"/api/loops/{loop['id']}", headers=bearer(owner["token"]))
    assert resp.status == 200
    await c.wait_for(lambda: any(e["code"] == "document_deleted" for e in c.errors))
    await c.wait_for(lambda: not c.connected)


async def test_making_private_drops_public_viewers(
    client: TestClient, connect: ClientFactory, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    headers = bearer(owner["token"])
    await client.patch(f"/api/loops/{loop['id']}", json={"isPublic": True}, headers=headers)
    stranger = await sign_up(client)
    viewer = await connect(loop["id"], token=stranger["token"])
    editor = await connect(loop["id"], token=owner["token"])
    await client.patch(f"/api/loops/{loop['id']}", json={"isPublic": False}, headers=headers)
    await viewer.wait_for(lambda: any(e["code"] == "access_revoked" for e in viewer.errors))
    await viewer.wait_for(lambda: not viewer.connected)
    assert editor.connected


async def test_share_token_grants_live_read_access(
    client: TestClient, connect: ClientFactory, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    import secrets
    import uuid

    from rest.context import REST_CONTEXT
    from storage.models import SharedLink

    # The share-link API is another issue; the row it will create is enough here.
    token = secrets.token_urlsafe(24)
    async with client.app[REST_CONTEXT].db.write_session() as session:
        session.add(SharedLink(resource_type="loop", resource_id=uuid.UUID(loop["id"]), share_token=token))
    guest = await connect(loop["id"], share_token=token)
    assert guest.role == "viewer"
    assert loop_doc_to_content(guest.doc)["name"] == loop["name"]
    await guest.wait_for(lambda: guest.presence and guest.presence[0]["displayName"] == "Guest")
    assert guest.presence is not None
    assert guest.presence[0]["userId"] is None
    meta(guest)["name"] = "Guest edit"
    await guest.wait_for(lambda: any(e["code"] == "read_only" for e in guest.errors))
    with pytest.raises(CollabConnectionRefused, match="not found"):
        await connect(loop["id"], share_token="not-a-real-share-token")
