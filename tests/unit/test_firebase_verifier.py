"""FirebaseVerifier against a real local certificate server and real RS256 tokens.

Nothing here mocks firebase-admin: tokens go through ``auth.verify_id_token``, which fetches
certificates over HTTP from the FakeFirebase server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Iterator

import firebase_admin
import jwt
import pytest
from firebase_admin import _token_gen

from identity.errors import InvalidToken
from identity.firebase import (
    GOOGLE_CERT_URL,
    FirebaseIdentity,
    FirebaseUnavailable,
    FirebaseVerifier,
)
from tests.firebase_fakes import FakeFirebase, generate_key


@pytest.fixture
async def fb() -> AsyncIterator[FakeFirebase]:
    async with FakeFirebase(project_id="mp-test") as fake:
        yield fake


@pytest.fixture
def verifier(fb: FakeFirebase) -> Iterator[FirebaseVerifier]:
    v = FirebaseVerifier(fb.project_id, cert_url=fb.cert_url)
    yield v
    v.close()


async def rejected(verifier: FirebaseVerifier, token: str) -> str:
    with pytest.raises(InvalidToken) as info:
        await verifier.verify(token)
    assert info.value.reason == str(info.value)
    return info.value.reason.lower()


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_valid_token_gives_identity(fb: FakeFirebase, verifier: FirebaseVerifier) -> None:
    token = fb.mint(
        "uid-alice",
        email="alice@example.com",
        name="Alice",
        picture="https://example.com/alice.png",
    )
    identity = await verifier.verify(token)
    assert identity == FirebaseIdentity(
        uid="uid-alice",
        email="alice@example.com",
        email_verified=True,
        display_name="Alice",
        avatar_url="https://example.com/alice.png",
    )
    assert fb.cert_requests == 1  # the certificates really came from the local server


async def test_optional_claims_absent(fb: FakeFirebase, verifier: FirebaseVerifier) -> None:
    token = fb.mint("uid-anon", email=None, email_verified=None, name=None, picture=None)
    identity = await verifier.verify(token)
    assert identity == FirebaseIdentity("uid-anon", None, False, None, None)


async def test_unverified_email(fb: FakeFirebase, verifier: FirebaseVerifier) -> None:
    identity = await verifier.verify(fb.mint("uid-bob", email_verified=False))
    assert identity.email == "uid-bob@example.com"
    assert identity.email_verified is False


async def test_certificates_are_cached(fb: FakeFirebase, verifier: FirebaseVerifier) -> None:
    for i in range(3):
        await verifier.verify(fb.mint(f"uid-{i}"))
    assert fb.cert_requests == 1


async def test_concurrent_verifications(fb: FakeFirebase, verifier: FirebaseVerifier) -> None:
    tokens = [fb.mint(f"uid-{i}") for i in range(8)]
    identities = await asyncio.gather(*(verifier.verify(t) for t in tokens))
    assert [i.uid for i in identities] == [f"uid-{i}" for i in range(8)]


async def test_expired(fb: FakeFirebase, verifier: FirebaseVerifier) -> None:
    now = int(time.time())
    token = fb.mint(iat=now - 7200, auth_time=now - 7200, exp=now - 3600)
    assert "expired" in await rejected(verifier, token)


async def test_issued_in_the_future(fb: FakeFirebase, verifier: FirebaseVerifier) -> None:
    now = int(time.time())
    token = fb.mint(iat=now + 600, exp=now + 4200)
    assert "not valid yet" in await rejected(verifier, token)


async def test_wrong_audience(fb: FakeFirebase, verifier: FirebaseVerifier) -> None:
    assert "audience" in await rejected(verifier, fb.mint(aud="someone-else"))


async def test_wrong_issuer(fb: FakeFirebase, verifier: FirebaseVerifier) -> None:
    reason = await rejected(verifier, fb.mint(iss="https://evil.example.com/mp-test"))
    assert "issuer" in reason


async def test_token_of_another_project(fb: FakeFirebase, verifier: FirebaseVerifier) -> None:
    token = fb.mint(project_id="other-project")  # aud and iss of the other project
    reason = await rejected(verifier, token)
    assert "another project" in reason


async def test_bad_signature(fb: FakeFirebase, verifier: FirebaseVerifier) -> None:
    token = fb.mint(key=generate_key())  # same kid, different key
    assert "signature" in await rejected(verifier, token)


async def test_tampered_payload(fb: FakeFirebase, verifier: FirebaseVerifier) -> None:
    header, _, signature = fb.mint("uid-mallory").split(".")
    claims = jwt.decode(fb.mint("uid-alice"), options={"verify_signature": False})
    forged = f"{header}.{_b64(claims)}.{signature}"
    assert "signature" in await rejected(verifier, forged)


async def test_unknown_kid(fb: FakeFirebase, verifier: FirebaseVerifier) -> None:
    assert "unknown key id" in await rejected(verifier, fb.mint(kid="rotated-away"))


@pytest.mark.parametrize(
    "token",
    [
        "not-a-jwt",
        "a.b.c",
        "a.b",
        "...",
        "   ",
        "",
        f"{_b64({'alg': 'RS256', 'kid': 'fake-kid-1'})}.bm90IGpzb24.c2ln",
        f"{_b64({'alg': 'RS256', 'kid': 'fake-kid-1'})}.{_b64([1, 2])}.c2ln",  # type: ignore[arg-type]
    ],
)
async def test_malformed(verifier: FirebaseVerifier, token: str) -> None:
    assert "malformed" in await rejected(verifier, token)


async def test_not_a_string(verifier: FirebaseVerifier) -> None:
    assert "malformed" in await rejected(verifier, None)  # type: ignore[arg-type]


async def test_too_long(fb: FakeFirebase, verifier: FirebaseVerifier) -> None:
    assert "malformed" in await rejected(verifier, fb.mint(padding="x" * 20_000))


async def test_missing_kid(fb: FakeFirebase, verifier: FirebaseVerifier) -> None:
    token = jwt.encode(jwt.decode(fb.mint(), options={"verify_signature": False}), fb.key, algorithm="RS256")
    assert "key id" in await rejected(verifier, token)


async def test_wrong_algorithm(fb: FakeFirebase, verifier: FirebaseVerifier) -> None:
    claims = jwt.decode(fb.mint(), options={"verify_signature": False})
    token = jwt.encode(
        claims, "a-secret-long-enough-for-hs256-hmac!", algorithm="HS256", headers={"kid": fb.kid}
    )
    assert "algorithm" in await rejected(verifier, token)


async def test_unsigned_token(fb: FakeFirebase, verifier: FirebaseVerifier) -> None:
    claims = jwt.decode(fb.mint(), options={"verify_signature": False})
    token = f"{_b64({'alg': 'none', 'kid': fb.kid})}.{_b64(claims)}."
    assert "algorithm" in await rejected(verifier, token)


async def test_missing_subject(fb: FakeFirebase, verifier: FirebaseVerifier) -> None:
    assert "subject" in await rejected(verifier, fb.mint(sub=None))
    assert "subject" in await rejected(verifier, fb.mint(sub=""))
    assert "subject" in await rejected(verifier, fb.mint(sub="x" * 129))


async def test_user_id_must_match_subject(fb: FakeFirebase, verifier: FirebaseVerifier) -> None:
    assert "subject" in await rejected(verifier, fb.mint("uid-a", user_id="uid-b"))


async def test_verifier_of_project_a_rejects_tokens_of_project_b(fb: FakeFirebase) -> None:
    # Like Google, one certificate endpoint signs tokens for every project.
    verifier_a = FirebaseVerifier("project-a", cert_url=fb.cert_url)
    verifier_b = FirebaseVerifier("project-b", cert_url=fb.cert_url)
    try:
        token_a = fb.mint("uid-1", project_id="project-a")
        token_b = fb.mint("uid-1", project_id="project-b")
        assert (await verifier_a.verify(token_a)).uid == "uid-1"
        assert (await verifier_b.verify(token_b)).uid == "uid-1"
        assert "another project" in await rejected(verifier_a, token_b)
        assert "another project" in await rejected(verifier_b, token_a)
    finally:
        verifier_a.close()
        verifier_b.close()


async def test_each_verifier_uses_its_own_certificates() -> None:
    async with FakeFirebase("mp-test") as one, FakeFirebase("mp-test") as two:
        v1 = FirebaseVerifier("mp-test", cert_url=one.cert_url)
        v2 = FirebaseVerifier("mp-test", cert_url=two.cert_url)
        try:
            assert (await v1.verify(one.mint("u1"))).uid == "u1"
            assert (await v2.verify(two.mint("u2"))).uid == "u2"
            # same kid, but signed by the other server's key
            assert "signature" in await rejected(v1, two.mint("u2"))
        finally:
            v1.close()
            v2.close()


async def test_certificate_server_down_is_not_the_clients_fault(fb: FakeFirebase) -> None:
    verifier = FirebaseVerifier(fb.project_id, cert_url=fb.cert_url.replace("/certs", "/nope"))
    try:
        with pytest.raises(FirebaseUnavailable):
            await verifier.verify(fb.mint())
    finally:
        verifier.close()


def test_construction_is_offline_and_close_deletes_the_app() -> None:
    before = set(firebase_admin._apps)
    verifier = FirebaseVerifier("mp-prod")
    assert verifier.cert_url == GOOGLE_CERT_URL == _token_gen.ID_TOKEN_CERT_URI
    assert len(set(firebase_admin._apps) - before) == 1
    verifier.close()
    verifier.close()  # idempotent
    assert set(firebase_admin._apps) == before


async def test_closed_verifier_refuses(fb: FakeFirebase) -> None:
    verifier = FirebaseVerifier(fb.project_id, cert_url=fb.cert_url)
    verifier.close()
    with pytest.raises(RuntimeError, match="closed"):
        await verifier.verify(fb.mint())


def test_refuses_auth_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099")
    with pytest.raises(RuntimeError, match="FIREBASE_AUTH_EMULATOR_HOST"):
        FirebaseVerifier("mp-test")


async def test_refuses_auth_emulator_set_later(
    fb: FakeFirebase, verifier: FirebaseVerifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099")
    with pytest.raises(RuntimeError, match="FIREBASE_AUTH_EMULATOR_HOST"):
        await verifier.verify(fb.mint())


def test_fails_loudly_if_firebase_admin_internals_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class TokenVerifierWithoutCertUrl:
        def __init__(self, app: object) -> None:
            self.request = None

    monkeypatch.setattr(_token_gen, "TokenVerifier", TokenVerifierWithoutCertUrl)
    before = set(firebase_admin._apps)
    with pytest.raises(RuntimeError, match="id_token_verifier"):
        FirebaseVerifier("mp-test", cert_url="http://127.0.0.1:1/certs")
    assert set(firebase_admin._apps) == before  # no app leaked


@pytest.mark.parametrize("bad", ["", None, 42])
def test_requires_project_id(bad: object) -> None:
    with pytest.raises(ValueError, match="project_id"):
        FirebaseVerifier(bad)  # type: ignore[arg-type]
