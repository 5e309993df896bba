"""Identity over HTTP: anonymous accounts, refresh rotation, Firebase tokens and linking."""

from __future__ import annotations

import time

from aiohttp.test_utils import TestClient

from tests.firebase_fakes import FakeFirebase, generate_key
from tests.helpers import LOOP, SONG, bearer, expect_error, sign_up


async def test_anonymous_account_gets_tokens_and_profile(client: TestClient) -> None:
    session = await sign_up(client)
    assert session["expiresIn"] == 3600
    assert session["user"]["isAnonymous"] is True
    assert session["refreshToken"] and session["token"]
    resp = await client.get("/api/users/me", headers=bearer(session["token"]))
    assert resp.status == 200
    assert (await resp.json())["id"] == session["user"]["id"]


async def test_me_requires_a_valid_token(client: TestClient) -> None:
    await expect_error(await client.get("/api/users/me"), 401, "unauthorized")
    await expect_error(await client.get("/api/users/me", headers=bearer("garbage")), 401, "invalid_token")
    await expect_error(
        await client.get("/api/users/me", headers={"Authorization": "Basic abc"}), 401, "invalid_token"
    )


async def test_refresh_rotates_and_reuse_revokes_the_chain(client: TestClient) -> None:
    session = await sign_up(client)
    first = session["refreshToken"]
    resp = await client.post("/api/auth/refresh", json={"refreshToken": first})
    assert resp.status == 200
    rotated = await resp.json()
    assert rotated["refreshToken"] != first
    assert rotated["user"]["id"] == session["user"]["id"]
    me = await client.get("/api/users/me", headers=bearer(rotated["token"]))
    assert me.status == 200

    # Replaying the old token is refused and kills the whole chain, the new token too.
    await expect_error(
        await client.post("/api/auth/refresh", json={"refreshToken": first}), 401, "refresh_token_reused"
    )
    await expect_error(
        await client.post("/api/auth/refresh", json={"refreshToken": rotated["refreshToken"]}), 401
    )


async def test_refresh_rejects_unknown_and_malformed(client: TestClient) -> None:
    await expect_error(await client.post("/api/auth/refresh", json={"refreshToken": "nope"}), 401)
    await expect_error(await client.post("/api/auth/refresh", json={}), 400, "validation_error")
    await expect_error(await client.post("/api/auth/refresh", json={"refreshToken": 5}), 400)


async def test_logout_revokes_refresh_token(client: TestClient) -> None:
    session = await sign_up(client)
    resp = await client.post("/api/auth/logout", json={"refreshToken": session["refreshToken"]})
    assert resp.status == 200
    await expect_error(
        await client.post("/api/auth/refresh", json={"refreshToken": session["refreshToken"]}), 401
    )


async def test_expired_access_token_is_refused(client: TestClient) -> None:
    import jwt

    from identity.tokens import KEY_ID
    from tests.conftest import TEST_SECRET

    session = await sign_up(client)
    claims = jwt.decode(session["token"], options={"verify_signature": False})
    claims["exp"] = int(time.time()) - 10
    expired = jwt.encode(claims, TEST_SECRET, algorithm="HS256", headers={"kid": KEY_ID})
    body = await expect_error(await client.get("/api/users/me", headers=bearer(expired)), 401)
    assert "expired" in body["error"]
    # Its own code: a client refreshes on token_expired instead of signing out.
    assert body["code"] == "token_expired"
    forged = jwt.encode(claims, "another-secret-that-is-long-enough-0123456789", algorithm="HS256")
    body = await expect_error(await client.get("/api/users/me", headers=bearer(forged)), 401)
    assert body["code"] == "invalid_token"
    body = await expect_error(await client.get("/api/users/me", headers=bearer("not-a-jwt")), 401)
    assert body["code"] == "invalid_token"


async def test_firebase_token_signs_in_and_creates_account_once(
    client: TestClient, fake_firebase: FakeFirebase
) -> None:
    token = fake_firebase.mint("fb-alice", email="alice@example.com", name="Alice")
    resp = await client.get("/api/users/me", headers=bearer(token))
    assert resp.status == 200, await resp.text()
    me = await resp.json()
    assert me["isAnonymous"] is False
    assert me["email"] == "alice@example.com"
    assert me["displayName"] == "Alice"
    again = await (await client.get("/api/users/me", headers=bearer(token))).json()
    assert again["id"] == me["id"]
    created = await client.post("/api/loops", json=LOOP, headers=bearer(token))
    assert created.status == 201
    assert (await created.json())["userId"] == me["id"]


async def test_bad_firebase_tokens_are_refused(client: TestClient, fake_firebase: FakeFirebase) -> None:
    now = int(time.time())
    bad = {
        "expired": fake_firebase.mint("u1", iat=now - 7200, exp=now - 3600, auth_time=now - 7200),
        "audience": fake_firebase.mint("u1", aud="another-project"),
        "issuer": fake_firebase.mint("u1", iss="https://securetoken.google.com/another-project"),
        "signature": fake_firebase.mint("u1", key=generate_key()),
        "project": fake_firebase.mint("u1", project_id="another-project"),
    }
    for case, token in bad.items():
        body = await expect_error(await client.get("/api/users/me", headers=bearer(token)), 401)
        # An expired ID token is refreshed by the Firebase SDK, not a sign-out.
        assert body["code"] == ("token_expired" if case == "expired" else "invalid_token"), case


async def test_link_keeps_every_loop_and_song(client: TestClient, fake_firebase: FakeFirebase) -> None:
    anon = await sign_up(client)
    headers = bearer(anon["token"])
    loop = await (await client.post("/api/loops", json=LOOP, headers=headers)).json()
    song = await (await client.post("/api/songs", json=SONG, headers=headers)).json()

    id_token = fake_firebase.mint("fb-bob", email="bob@example.com", name="Bob")
    resp = await client.post("/api/auth/link", json={"idToken": id_token}, headers=headers)
    assert resp.status == 200, await resp.text()
    linked = await resp.json()
    assert linked["user"]["id"] == anon["user"]["id"]
    assert linked["user"]["isAnonymous"] is False
    assert linked["user"]["email"] == "bob@example.com"

    # The Firebase token itself now reaches the same account and its data.
    fb_headers = bearer(id_token)
    loops = await (await client.get("/api/loops", headers=fb_headers)).json()
    songs = await (await client.get("/api/songs", headers=fb_headers)).json()
    assert [item["id"] for item in loops["loops"]] == [loop["id"]]
    assert [item["id"] for item in songs["songs"]] == [song["id"]]


async def test_link_into_existing_account_merges_data(
    client: TestClient, fake_firebase: FakeFirebase
) -> None:
    id_token = fake_firebase.mint("fb-carol", email="carol@example.com")
    fb_headers = bearer(id_token)
    existing_loop = await (await client.post("/api/loops", json=LOOP, headers=fb_headers)).json()
    account = await (await client.get("/api/users/me", headers=fb_headers)).json()

    anon = await sign_up(client)
    anon_headers = bearer(anon["token"])
    anon_loop = await (await client.post("/api/loops", json=LOOP, headers=anon_headers)).json()
    anon_song = await (await client.post("/api/songs", json=SONG, headers=anon_headers)).json()

    resp = await client.post("/api/auth/link", json={"idToken": id_token}, headers=anon_headers)
    assert resp.status == 200, await resp.text()
    merged = await resp.json()
    assert merged["user"]["id"] == account["id"]

    headers = bearer(merged["token"])
    loops = await (await client.get("/api/loops", headers=headers)).json()
    assert {item["id"] for item in loops["loops"]} == {existing_loop["id"], anon_loop["id"]}
    songs = await (await client.get("/api/songs", headers=headers)).json()
    assert [item["id"] for item in songs["songs"]] == [anon_song["id"]]
    full = await (await client.get(f"/api/loops/{anon_loop['id']}", headers=headers)).json()
    assert full["chordProgression"] == anon_loop["chordProgression"]
    assert full["userId"] == account["id"]
    # The anonymous account is gone; its refresh token no longer works.
    await expect_error(
        await client.post("/api/auth/refresh", json={"refreshToken": anon["refreshToken"]}), 401
    )


async def test_link_refuses_bad_input(client: TestClient, fake_firebase: FakeFirebase) -> None:
    anon = await sign_up(client)
    headers = bearer(anon["token"])
    await expect_error(await client.post("/api/auth/link", json={"idToken": "x"}), 401)
    await expect_error(
        await client.post("/api/auth/link", json={"idToken": "not-a-jwt"}, headers=headers), 401
    )
    await expect_error(await client.post("/api/auth/link", json={}, headers=headers), 400)
    # An account already linked to one identity cannot be linked to another.
    first = fake_firebase.mint("fb-dan")
    assert (await client.post("/api/auth/link", json={"idToken": first}, headers=headers)).status == 200
    second = fake_firebase.mint("fb-erin")
    await expect_error(
        await client.post("/api/auth/link", json={"idToken": second}, headers=headers), 409, "conflict"
    )
