"""Verification of Firebase ID tokens (production identity mode).

The heavy lifting is done by firebase-admin's own verifier (``auth.verify_id_token``):
header checks (kid, RS256), audience/issuer for our project, subject, signature against
Google's published X.509 certificates (fetched and HTTP-cached by google-auth), and
``iat``/``exp``. This module only

* gives every :class:`FirebaseVerifier` its own, credential-less firebase app,
* optionally redirects *where* the public certificates are fetched from (tests),
* runs the blocking verification in a worker thread, and
* turns firebase-admin's exceptions into :class:`identity.errors.InvalidToken` with a short
  reason that is safe to show to the client.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import uuid
from dataclasses import dataclass
from typing import Any

import firebase_admin
import google.auth.credentials
from firebase_admin import _token_gen, auth, credentials

from identity.errors import ExpiredToken, InvalidToken

__all__ = ["GOOGLE_CERT_URL", "FirebaseIdentity", "FirebaseUnavailable", "FirebaseVerifier"]

log = logging.getLogger(__name__)

#: Where Google publishes the certificates that sign Firebase ID tokens.
GOOGLE_CERT_URL = _token_gen.ID_TOKEN_CERT_URI

_EMULATOR_ENV = "FIREBASE_AUTH_EMULATOR_HOST"
# Real ID tokens are ~1-2 KB (custom claims are capped at 1000 bytes); refuse absurd input
# before handing it to a worker thread.
_MAX_TOKEN_CHARS = 16_384
# Timeout (seconds) of the certificate fetch; firebase-admin's default is 120 s.
_HTTP_TIMEOUT = 10
_app_counter = itertools.count(1)


@dataclass(frozen=True)
class FirebaseIdentity:
    """Who a verified Firebase ID token says the caller is."""

    uid: str
    email: str | None
    email_verified: bool
    display_name: str | None
    avatar_url: str | None


class FirebaseUnavailable(RuntimeError):
    """Google's public certificates could not be fetched, so no verdict is possible.

    This is not the client's fault: map it to 503, not 401.
    """


class _NoCredential(credentials.Base):
    """A credential that never touches the environment or the network.

    Verifying ID tokens needs only the project id and Google's *public* certificates. The
    default (``ApplicationDefault``) would look for service-account files / the GCE metadata
    server when the auth client is built; anonymous credentials avoid that. Admin APIs that
    need a real credential (user management, revocation checks) are not used here.
    """

    def __init__(self) -> None:
        self._g_credential = google.auth.credentials.AnonymousCredentials()

    def get_credential(self) -> google.auth.credentials.Credentials:
        return self._g_credential


class FirebaseVerifier:
    """Verifies Firebase ID tokens issued for ``project_id``.

    ``cert_url`` overrides where the signing certificates (a JSON object
    ``{kid: x509_pem}``) are fetched from; ``None`` means Google's real endpoint
    (:data:`GOOGLE_CERT_URL`). Call :meth:`close` when done.
    """

    def __init__(
        self,
        project_id: str,
        cert_url: str | None = None,
        *,
        clock_skew_seconds: int = 10,
    ) -> None:
        if not isinstance(project_id, str) or not project_id:
            raise ValueError("project_id must be a non-empty string")
        if not 0 <= clock_skew_seconds <= 60:
            raise ValueError("clock_skew_seconds must be between 0 and 60")
        _refuse_emulator()
        self.project_id = project_id
        self.cert_url = cert_url or GOOGLE_CERT_URL
        self._clock_skew = clock_skew_seconds
        self._app: firebase_admin.App | None = firebase_admin.initialize_app(
            _NoCredential(),
            options={"projectId": project_id, "httpTimeout": _HTTP_TIMEOUT},
            name=f"musicplayground-verifier-{next(_app_counter)}-{uuid.uuid4().hex[:8]}",
        )
        try:
            # Build the app's auth client now (offline thanks to _NoCredential) so that
            # misconfiguration shows up at startup and the cert URL can be set on it.
            # auth.verify_id_token(app=...) reuses this same cached client.
            self._client = auth._get_client(self._app)
            self._id_token_verifier = _id_token_verifier_of(self._client)
            if cert_url is not None:
                # firebase-admin has no public option for the certificate URL: it is the
                # module constant ID_TOKEN_CERT_URI, copied at client construction into
                # ``client._token_verifier.id_token_verifier.cert_url`` and read on every
                # verify. Setting that per-instance attribute redirects only this app's
                # certificate fetches and leaves the whole verification path untouched
                # (patching the module constant would leak into every app in the process).
                self._id_token_verifier.cert_url = cert_url
        except BaseException:
            firebase_admin.delete_app(self._app)
            self._app = None
            raise

    async def verify(self, id_token: str) -> FirebaseIdentity:
        """Verify ``id_token`` and return the identity it asserts.

        Raises :class:`InvalidToken` (with a short reason) for any token that is not a valid,
        current ID token of this project, and :class:`FirebaseUnavailable` when Google's
        certificates cannot be fetched.
        """
        if self._app is None:
            raise RuntimeError("FirebaseVerifier is closed")
        if not isinstance(id_token, str) or not id_token.strip():
            raise InvalidToken("Firebase ID token is empty or malformed")
        if len(id_token) > _MAX_TOKEN_CHARS:
            raise InvalidToken("Firebase ID token is malformed (too long)")
        # With the emulator variable set, firebase-admin skips the signature check.
        _refuse_emulator()
        try:
            # Blocking: may fetch the certificates over HTTP (cached per Cache-Control).
            claims = await asyncio.to_thread(
                auth.verify_id_token,
                id_token,
                app=self._app,
                check_revoked=False,
                clock_skew_seconds=self._clock_skew,
            )
        except auth.ExpiredIdTokenError as exc:
            raise ExpiredToken("Firebase ID token has expired") from exc
        except auth.InvalidIdTokenError as exc:
            raise InvalidToken(_reason_for(str(exc))) from exc
        except auth.CertificateFetchError as exc:
            raise FirebaseUnavailable(f"could not fetch Firebase public certificates: {exc}") from exc
        except ValueError as exc:  # non-string / empty token, as raised by firebase-admin
            raise InvalidToken("Firebase ID token is malformed") from exc
        return _identity_from_claims(claims)

    def close(self) -> None:
        """Delete this verifier's firebase app and close its HTTP session. Idempotent."""
        app, self._app = self._app, None
        if app is None:
            return
        session = getattr(getattr(self._client._token_verifier, "request", None), "session", None)
        firebase_admin.delete_app(app)
        if session is not None:
            session.close()

    async def __aenter__(self) -> FirebaseVerifier:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


def _refuse_emulator() -> None:
    if os.environ.get(_EMULATOR_ENV):
        raise RuntimeError(
            f"{_EMULATOR_ENV} is set: firebase-admin would accept unsigned ID tokens. "
            "Unset it; FirebaseVerifier only verifies real, signed tokens."
        )


def _id_token_verifier_of(client: Any) -> Any:
    """Return firebase-admin's internal ``_JWTVerifier`` for ID tokens, or fail loudly."""
    verifier = getattr(getattr(client, "_token_verifier", None), "id_token_verifier", None)
    if verifier is None or not isinstance(getattr(verifier, "cert_url", None), str):
        raise RuntimeError(
            f"firebase-admin {firebase_admin.__version__} no longer exposes "
            "Client._token_verifier.id_token_verifier.cert_url; FirebaseVerifier needs it to "
            "choose where ID-token certificates are fetched from. Update identity/firebase.py."
        )
    return verifier


# firebase-admin / google-auth messages (lower-cased fragments) -> reason shown to clients.
# Order matters: the first match wins.
_REASONS: tuple[tuple[str, str], ...] = (
    ("token expired", "Firebase ID token has expired"),
    ('incorrect "aud"', "Firebase ID token was issued for another project (wrong audience)"),
    ("wrong audience", "Firebase ID token was issued for another project (wrong audience)"),
    ('incorrect "iss"', "Firebase ID token has the wrong issuer"),
    ("certificate for key id", "Firebase ID token is signed with an unknown key id"),
    ("could not verify token signature", "Firebase ID token has an invalid signature"),
    ("key type does not match", "Firebase ID token has an invalid signature"),
    ('has no "kid"', "Firebase ID token is malformed (no key id)"),
    ("custom token", "expected a Firebase ID token, got a custom token"),
    ("incorrect algorithm", "Firebase ID token uses an unsupported signing algorithm"),
    ("unsupported signature algorithm", "Firebase ID token uses an unsupported algorithm"),
    ('"sub"', "Firebase ID token has a missing or invalid subject"),
    ("used too early", "Firebase ID token is not valid yet (issued in the future)"),
    ("required claim", "Firebase ID token is missing a required claim"),
    ("revoked", "Firebase ID token has been revoked"),
)


def _reason_for(message: str) -> str:
    lowered = message.lower()
    for fragment, reason in _REASONS:
        if fragment in lowered:
            return reason
    # Undecodable segments, wrong number of segments, non-JSON header/payload, ...
    log.debug("Firebase ID token rejected: %s", message)
    return "Firebase ID token is malformed"


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _identity_from_claims(claims: dict[str, Any]) -> FirebaseIdentity:
    uid = claims.get("sub")  # firebase-admin checked: non-empty str, <= 128 chars
    user_id = claims.get("user_id", uid)
    if not isinstance(uid, str) or not uid or user_id != uid:
        raise InvalidToken("Firebase ID token has a missing or invalid subject")
    return FirebaseIdentity(
        uid=uid,
        email=_optional_str(claims.get("email")),
        email_verified=claims.get("email_verified") is True,
        display_name=_optional_str(claims.get("name")),
        avatar_url=_optional_str(claims.get("picture")),
    )
