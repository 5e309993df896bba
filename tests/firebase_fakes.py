"""A fake Firebase token issuer for tests: real keys, real HTTP, real JWTs.

Usage::

    async with FakeFirebase(project_id="mp-test") as fb:
        verifier = FirebaseVerifier(fb.project_id, cert_url=fb.cert_url)
        token = fb.mint("alice", email="alice@example.com")
        identity = await verifier.verify(token)

``FakeFirebase`` generates an RSA key and a self-signed X.509 certificate, serves
``{kid: certificate_pem}`` (the format of Google's securetoken endpoint) from an aiohttp
server on ``127.0.0.1`` (random port) in the *current* event loop, and mints RS256 ID tokens
with the claims Firebase puts in real ones. The verifier fetches certificates with blocking
``requests`` in a worker thread (``asyncio.to_thread``), so the loop stays free to answer.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

import jwt
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

__all__ = ["FakeFirebase", "generate_key"]

ISSUER_PREFIX = "https://securetoken.google.com/"


def generate_key() -> rsa.RSAPrivateKey:
    """A fresh RSA key, e.g. to sign a token that must fail signature verification."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _self_signed_cert_pem(key: rsa.RSAPrivateKey) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "securetoken.system.gserviceaccount.com")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


class FakeFirebase:
    """Fake Firebase Auth: serves signing certificates and mints ID tokens.

    Attributes (valid once started):
      ``project_id`` -- the project tokens are minted for by default;
      ``cert_url``   -- URL of the ``{kid: cert_pem}`` JSON (pass to ``FirebaseVerifier``);
      ``kid`` / ``key`` -- the published key id and its RSA private key;
      ``cert_requests`` -- how many times the certificates were fetched.
    """

    def __init__(self, project_id: str = "mp-test", *, max_age: int = 3600) -> None:
        self.project_id = project_id
        self.kid = "fake-kid-1"
        self.key = generate_key()
        self._certs: dict[str, str] = {self.kid: _self_signed_cert_pem(self.key)}
        self._max_age = max_age
        self._runner: web.AppRunner | None = None
        self.cert_url = ""
        self.cert_requests = 0

    async def start(self) -> FakeFirebase:
        app = web.Application()
        app.router.add_get("/certs", self._serve_certs)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.cert_url = f"http://{host}:{port}/certs"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeFirebase:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _serve_certs(self, request: web.Request) -> web.Response:
        self.cert_requests += 1
        # Google sends "Cache-Control: public, max-age=..."; the verifier caches accordingly.
        return web.json_response(self._certs, headers={"Cache-Control": f"public, max-age={self._max_age}"})

    def issuer(self, project_id: str | None = None) -> str:
        return ISSUER_PREFIX + (project_id or self.project_id)

    def mint(
        self,
        uid: str = "firebase-user-1",
        *,
        project_id: str | None = None,
        kid: str | None = None,
        key: rsa.RSAPrivateKey | None = None,
        **claims: Any,
    ) -> str:
        """Return an RS256 Firebase ID token for ``uid``.

        ``project_id`` sets both ``aud`` and ``iss`` (default: this fake's project).
        ``kid`` / ``key`` override the header key id / signing key (default: the published
        ones). Any other keyword overrides that claim; ``None`` removes it, e.g.
        ``mint("u", exp=int(time.time()) - 10)`` or ``mint("u", email=None)``.
        """
        project = project_id or self.project_id
        now = int(time.time())
        payload: dict[str, Any] = {
            "name": "Test User",
            "picture": f"https://example.com/avatars/{uid}.png",
            "iss": ISSUER_PREFIX + project,
            "aud": project,
            "auth_time": now - 60,
            "user_id": uid,
            "sub": uid,
            "iat": now,
            "exp": now + 3600,
            "email": f"{uid}@example.com",
            "email_verified": True,
            "firebase": {
                "identities": {"google.com": ["1234567890"], "email": [f"{uid}@example.com"]},
                "sign_in_provider": "google.com",
            },
        }
        for name, value in claims.items():
            if value is None:
                payload.pop(name, None)
            else:
                payload[name] = value
        return jwt.encode(
            payload,
            key or self.key,
            algorithm="RS256",
            headers={"kid": kid or self.kid},
        )
