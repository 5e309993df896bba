"""Profiles: PATCH /api/users/me and the public GET /api/users/{username}."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.community import account, create_document
from tests.helpers import bearer, expect_error


async def test_profile_update_and_public_profile(client: TestClient) -> None:
    who = await account(client)
    resp = await client.patch(
        "/api/users/me",
        json={
            "username": "Beat_Maker",
            "displayName": "Beat Maker",
            "avatarUrl": "https://cdn.example.com/a.png",
            "bio": "loops all day",
        },
        headers=who["headers"],
    )
    assert resp.status == 200, await resp.text()
    me = await resp.json()
    assert me["username"] == "beat_maker"  # stored lower-case: unique case-insensitively
    assert me["displayName"] == "Beat Maker" and me["bio"] == "loops all day" and me["isAdmin"] is False
    assert (await (await client.get("/api/users/me", headers=who["headers"])).json()) == me

    public = await create_document(client, who, name="Public one", isPublic=True)
    await create_document(client, who, name="Private one")
    song = await create_document(client, who, "songs", isPublic=True)
    profile = await (await client.get("/api/users/BEAT_MAKER")).json()
    assert profile["username"] == "beat_maker" and profile["displayName"] == "Beat Maker"
    assert profile["avatarUrl"] == "https://cdn.example.com/a.png" and profile["bio"] == "loops all day"
    assert [x["id"] for x in profile["publicLoops"]] == [public["id"]]
    assert [x["id"] for x in profile["publicSongs"]] == [song["id"]]
    assert profile["totalLoops"] == 1 and profile["totalSongs"] == 1 and profile["hasMore"] is False
    assert profile["publicLoops"][0]["owner"]["username"] == "beat_maker"
    text = str(profile)
    for secret in ("email", "firebase", "isAnonymous"):
        assert secret not in text
    assert "chordProgression" not in profile["publicLoops"][0]

    # null clears optional fields; absent ones stay.
    cleared = await (await client.patch("/api/users/me", json={"bio": None}, headers=who["headers"])).json()
    assert cleared["bio"] is None and cleared["displayName"] == "Beat Maker"


async def test_profile_pages(client: TestClient) -> None:
    who = await account(client, "pager")
    made = [await create_document(client, who, name=f"L{i}", isPublic=True) for i in range(5)]
    page1 = await (await client.get("/api/users/pager?limit=2")).json()
    page3 = await (await client.get("/api/users/pager?limit=2&page=3")).json()
    assert [x["name"] for x in page1["publicLoops"]] == ["L4", "L3"] and page1["hasMore"] is True
    assert [x["id"] for x in page3["publicLoops"]] == [made[0]["id"]] and page3["hasMore"] is False
    await expect_error(await client.get("/api/users/pager?limit=0"), 400, "validation_error")
    await expect_error(await client.get("/api/users/pager?page=x"), 400, "validation_error")


async def test_username_taken_case_insensitively_is_409(client: TestClient) -> None:
    await account(client, "taken_name")
    other = await account(client)
    body = await expect_error(
        await client.patch("/api/users/me", json={"username": "TAKEN_NAME"}, headers=other["headers"]), 409
    )
    assert "taken" in body["error"]
    me = await (await client.get("/api/users/me", headers=other["headers"])).json()
    assert me["username"] is None
    # Keeping one's own name is not a conflict.
    owner = await account(client, "mine_here")
    assert (
        await client.patch("/api/users/me", json={"username": "mine_here"}, headers=owner["headers"])
    ).status == 200


async def test_concurrent_claims_of_one_username_give_one_winner(client: TestClient) -> None:
    people = [await account(client) for _ in range(4)]
    results = await asyncio.gather(
        *(client.patch("/api/users/me", json={"username": "race"}, headers=p["headers"]) for p in people)
    )
    assert sorted(r.status for r in results) == [200, 409, 409, 409]


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({"username": "ab"}, "username"),
        ({"username": "a" * 31}, "username"),
        ({"username": "has space"}, "username"),
        ({"username": "dash-name"}, "username"),
        ({"username": "admin"}, "reserved"),
        ({"username": None}, "username"),
        ({"username": 123}, "username"),
        ({"avatarUrl": "javascript:alert(1)"}, "http"),
        ({"avatarUrl": "data:image/png;base64,AAAA"}, "http"),
        ({"avatarUrl": "https://" + "a" * 2050}, "avatarUrl"),
        ({"avatarUrl": "https:// spaced.example"}, "http"),
        ({"displayName": ""}, "displayName"),
        ({"displayName": "   "}, "blank"),
        ({"displayName": "x" * 101}, "displayName"),
        ({"bio": "x" * 501}, "bio"),
        ({"nickname": "x"}, "unknown field 'nickname'"),
        ({"isAdmin": True}, "managed by the server"),
        ({"email": "me@example.com"}, "managed by the server"),
        ({"id": "00000000-0000-0000-0000-000000000000"}, "managed by the server"),
        ({"isAnonymous": False}, "managed by the server"),
        ({"firebaseUid": "x"}, "managed by the server"),
    ],
)
async def test_bad_profile_input_is_400_and_changes_nothing(
    client: TestClient, payload: dict[str, Any], needle: str
) -> None:
    who = await account(client, "before_name", displayName="Before", bio="old")
    body = await expect_error(await client.patch("/api/users/me", json=payload, headers=who["headers"]), 400)
    assert needle in body["error"] + str(body["details"]), body
    me = await (await client.get("/api/users/me", headers=who["headers"])).json()
    assert (me["username"], me["displayName"], me["bio"], me["isAdmin"]) == (
        "before_name",
        "Before",
        "old",
        False,
    )


async def test_profile_auth_and_unknown_users(client: TestClient) -> None:
    await expect_error(await client.patch("/api/users/me", json={"bio": "x"}), 401)
    await expect_error(await client.patch("/api/users/me", json={"bio": "x"}, headers=bearer("garbage")), 401)
    await expect_error(await client.get("/api/users/nobody_here"), 404)
    await expect_error(await client.get("/api/users/" + "x" * 200), 404)
    who = await account(client)
    await expect_error(
        await client.patch(
            "/api/users/me", data="{", headers={**who["headers"], "Content-Type": "application/json"}
        ),
        400,
    )
    await expect_error(await client.patch("/api/users/me", data="bio", headers=who["headers"]), 415)
