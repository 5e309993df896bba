"""Reports, admins, and hidden content: it vanishes for everyone but its owner and admins."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from loadtest.client import CollabClient
from rest.context import REST_CONTEXT
from storage.models import Report
from tests.community import account, create_document, make_admin
from tests.helpers import expect_error


async def admin_account(client: TestClient) -> dict[str, Any]:
    admin = await account(client, f"mod_{uuid.uuid4().hex[:8]}")
    await make_admin(client, admin["user"]["id"])
    return admin


async def report(client: TestClient, who: dict[str, Any], resource_type: str, resource_id: str) -> Any:
    resp = await client.post(
        "/api/reports",
        json={"resourceType": resource_type, "resourceId": resource_id, "reason": "spam"},
        headers=who["headers"],
    )
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def report_count(client: TestClient) -> int:
    async with client.app[REST_CONTEXT].db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(Report)) or 0)


async def test_report_once_then_an_admin_hides_it(client: TestClient) -> None:
    owner = await account(client, "uploader")
    reporter, second = await account(client), await account(client)
    admin = await admin_account(client)
    loop = await create_document(client, owner, name="Stolen beat", isPublic=True)
    first = await report(client, reporter, "loop", loop["id"])
    assert first["status"] == "open" and first["resourceId"] == loop["id"] and first["reason"] == "spam"
    again = await client.post(
        "/api/reports",
        json={"resourceType": "loop", "resourceId": loop["id"], "reason": "x"},
        headers=reporter["headers"],
    )
    await expect_error(again, 409)
    await report(client, second, "loop", loop["id"])

    listed = await (await client.get("/api/admin/reports", headers=admin["headers"])).json()
    assert listed["total"] == 2 and next(r["id"] for r in listed["reports"]) == first["id"]
    resp = await client.post(
        f"/api/admin/reports/{first['id']}/resolve",
        json={"action": "hide", "reason": "dmca"},
        headers=admin["headers"],
    )
    resolved = await resp.json()
    assert resp.status == 200 and resolved["status"] == "resolved" and resolved["resolution"] == "hide"
    # Both reports of the resource are resolved together.
    assert (await (await client.get("/api/admin/reports", headers=admin["headers"])).json())["total"] == 0
    assert (await (await client.get("/api/admin/reports?status=resolved", headers=admin["headers"])).json())[
        "total"
    ] == 2

    path = f"/api/loops/{loop['id']}"
    await expect_error(await client.get(path), 404)
    await expect_error(await client.get(path, headers=reporter["headers"]), 404)
    mine = await (await client.get(path, headers=owner["headers"])).json()
    assert mine["hidden"] is True and mine["hiddenReason"] == "dmca"
    assert (await client.get(path, headers=admin["headers"])).status == 200
    assert (await (await client.get("/api/explore")).json())["total"] == 0
    assert (await (await client.get("/api/users/uploader")).json())["publicLoops"] == []
    await expect_error(await client.get(f"{path}/comments"), 404)
    own_list = await (await client.get("/api/loops", headers=owner["headers"])).json()
    assert own_list["loops"][0]["hidden"] is True

    resp = await client.post(f"/api/admin/loops/{loop['id']}/unhide", headers=admin["headers"])
    assert (await resp.json()) == {
        "resourceType": "loop",
        "resourceId": loop["id"],
        "hidden": False,
        "hiddenReason": None,
    }
    assert (await client.get(path)).status == 200
    assert (await (await client.get(path, headers=owner["headers"])).json())["hidden"] is False


async def test_dismiss_changes_nothing_but_the_report(client: TestClient) -> None:
    owner, reporter = await account(client), await account(client)
    admin = await admin_account(client)
    loop = await create_document(client, owner, isPublic=True)
    filed = await report(client, reporter, "loop", loop["id"])
    resp = await client.post(
        f"/api/admin/reports/{filed['id']}/resolve", json={"action": "dismiss"}, headers=admin["headers"]
    )
    assert (await resp.json())["resolution"] == "dismiss"
    assert (await client.get(f"/api/loops/{loop['id']}")).status == 200


async def test_hidden_comments_and_users_vanish(client: TestClient) -> None:
    owner = await account(client, "host")
    troll = await account(client, "troll")
    admin = await admin_account(client)
    loop = await create_document(client, owner, isPublic=True)
    path = f"/api/loops/{loop['id']}/comments"
    bad = await (await client.post(path, json={"body": "bad words"}, headers=troll["headers"])).json()
    good = await (await client.post(path, json={"body": "kind words"}, headers=owner["headers"])).json()

    resp = await client.post(
        f"/api/admin/comments/{bad['id']}/hide", json={"reason": "abuse"}, headers=admin["headers"]
    )
    assert (await resp.json())["hidden"] is True
    assert [c["id"] for c in (await (await client.get(path)).json())["comments"]] == [good["id"]]
    own_view = await (await client.get(path, headers=troll["headers"])).json()
    assert next((c["id"], c["hidden"], c["hiddenReason"]) for c in own_view["comments"]) == (
        bad["id"],
        True,
        "abuse",
    )
    assert (await (await client.get(path, headers=admin["headers"])).json())["total"] == 2
    await expect_error(
        await client.patch(f"/api/comments/{bad['id']}", json={"body": "x"}, headers=owner["headers"]), 404
    )

    # Hiding an account hides its profile, its public items in explore and its comments.
    troll_loop = await create_document(client, troll, name="Troll loop", isPublic=True)
    await client.post(f"/api/admin/comments/{bad['id']}/unhide", headers=admin["headers"])
    resp = await client.post(
        f"/api/admin/users/{troll['user']['id']}/hide",
        json={"reason": "spam account"},
        headers=admin["headers"],
    )
    assert resp.status == 200
    await expect_error(await client.get("/api/users/troll"), 404)
    assert troll_loop["id"] not in [
        x["id"] for x in (await (await client.get("/api/explore")).json())["items"]
    ]
    assert [c["id"] for c in (await (await client.get(path)).json())["comments"]] == [good["id"]]
    assert (await (await client.get("/api/users/troll", headers=troll["headers"])).json())["hidden"] is True


async def test_hiding_disconnects_live_viewers_but_not_the_owner(client: TestClient) -> None:
    owner, viewer = await account(client), await account(client)
    admin = await admin_account(client)
    loop = await create_document(client, owner, isPublic=True)
    base = str(client.make_url("")).rstrip("/")
    owner_socket = CollabClient(base, "loop", loop["id"], token=owner["token"])
    viewer_socket = CollabClient(base, "loop", loop["id"], token=viewer["token"])
    try:
        await owner_socket.connect()
        await viewer_socket.connect()
        resp = await client.post(
            f"/api/admin/loops/{loop['id']}/hide", json={"reason": "dmca"}, headers=admin["headers"]
        )
        assert resp.status == 200
        await viewer_socket.wait_for(
            lambda: any(e == "error" and p.get("code") == "access_revoked" for e, p in viewer_socket.events)
        )
        await viewer_socket.wait_for(lambda: not viewer_socket.connected)
        assert owner_socket.connected
        # A new viewer socket is refused while it is hidden.
        late = CollabClient(base, "loop", loop["id"], token=viewer["token"])
        with pytest.raises(Exception, match="not found"):
            await late.connect()
        await late.close()
    finally:
        await owner_socket.close()
        await viewer_socket.close()


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"resourceType": "sample", "resourceId": str(uuid.uuid4()), "reason": "x"}, 400),
        ({"resourceType": "loop", "resourceId": "nope", "reason": "x"}, 400),
        ({"resourceType": "loop", "resourceId": str(uuid.uuid4()), "reason": ""}, 400),
        ({"resourceType": "loop", "resourceId": str(uuid.uuid4()), "reason": "x" * 1001}, 400),
        ({"resourceType": "loop", "resourceId": str(uuid.uuid4())}, 400),
        ({"resourceType": "loop", "resourceId": str(uuid.uuid4()), "reason": "x", "more": 1}, 400),
        ({"resourceType": "loop", "resourceId": str(uuid.uuid4()), "reason": "x"}, 404),
    ],
)
async def test_bad_reports(client: TestClient, body: dict[str, Any], status: int) -> None:
    who = await account(client)
    await expect_error(await client.post("/api/reports", json=body, headers=who["headers"]), status)
    assert await report_count(client) == 0


async def test_reports_of_private_or_own_things(client: TestClient) -> None:
    owner, other = await account(client, "private_person"), await account(client)
    private = await create_document(client, owner)
    body = {"resourceType": "loop", "resourceId": private["id"], "reason": "x"}
    await expect_error(await client.post("/api/reports", json=body, headers=other["headers"]), 404)
    await expect_error(
        await client.post("/api/reports", json=body, headers=owner["headers"]), 400, "invalid_report"
    )
    await report(client, other, "user", owner["user"]["id"])
    assert await report_count(client) == 1


async def test_bad_admin_input(client: TestClient) -> None:
    admin = await admin_account(client)
    owner = await account(client)
    loop = await create_document(client, owner, isPublic=True)
    h = admin["headers"]
    await expect_error(await client.post(f"/api/admin/loops/{loop['id']}/hide", json={}, headers=h), 400)
    await expect_error(
        await client.post(f"/api/admin/loops/{loop['id']}/hide", json={"reason": ""}, headers=h), 400
    )
    await expect_error(
        await client.post(f"/api/admin/loops/{loop['id']}/hide", json={"reason": "x" * 201}, headers=h), 400
    )
    await expect_error(
        await client.post(f"/api/admin/loops/{uuid.uuid4()}/hide", json={"reason": "x"}, headers=h), 404
    )
    await expect_error(await client.post("/api/admin/loops/nope/hide", json={"reason": "x"}, headers=h), 400)
    await expect_error(await client.get("/api/admin/reports?status=maybe", headers=h), 400)
    await expect_error(
        await client.post(f"/api/admin/reports/{uuid.uuid4()}/resolve", json={"action": "hide"}, headers=h),
        404,
    )
    filed = await report(client, admin, "loop", loop["id"])
    await expect_error(
        await client.post(f"/api/admin/reports/{filed['id']}/resolve", json={"action": "ban"}, headers=h), 400
    )
    assert (await client.get(f"/api/loops/{loop['id']}")).status == 200


async def test_admin_user_ids_setting_makes_admins(aiohttp_client: Any, settings: Any) -> None:
    from musicplayground.app import create_app
    from tests.helpers import bearer, sign_up

    probe = await aiohttp_client(create_app(settings))
    who = await sign_up(probe)
    configured = await aiohttp_client(
        create_app(settings.replace(admin_user_ids=frozenset({uuid.UUID(who["user"]["id"])})))
    )
    resp = await configured.get("/api/admin/reports", headers=bearer(who["token"]))
    assert resp.status == 200
    me = await (await configured.get("/api/users/me", headers=bearer(who["token"]))).json()
    assert me["isAdmin"] is True
