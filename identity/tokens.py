"""Our own tokens: short-lived signed access tokens and opaque refresh tokens.

Access tokens are HS256 JWTs (verified without a database round trip). Refresh tokens
are random strings; only their SHA-256 is stored, so a database leak cannot mint sessions.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
import uuid
from dataclasses import dataclass

import jwt

from identity.errors import ExpiredToken, InvalidToken

ISSUER = "musicplayground"
AUDIENCE = "musicplayground-api"
# In the JWT header, so telling our tokens from Firebase's needs no payload decoding.
KEY_ID = "musicplayground-hs256"
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    is_anonymous: bool
    expires_at: int


class TokenIssuer:
    """Signs and verifies access tokens with the server's secret key."""

    def __init__(self, secret: str, *, access_ttl: int = 3600) -> None:
        self._secret = secret
        self.access_ttl = access_ttl

    def issue_access(self, user_id: uuid.UUID, *, is_anonymous: bool) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": str(user_id),
            "iat": now,
            "exp": now + self.access_ttl,
            "anon": is_anonymous,
            "typ": "access",
        }
        return jwt.encode(claims, self._secret, algorithm="HS256", headers={"kid": KEY_ID})

    def verify_access(self, token: str) -> AccessClaims:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise ExpiredToken("access token expired; refresh it") from None
        except jwt.PyJWTError:
            raise InvalidToken("invalid access token") from None
        if claims.get("typ") != "access":
            raise InvalidToken("invalid access token")
        # RFC 7519 NumericDate is a JSON number; PyJWT also takes "1700000000" (a string).
        if any(type(claims.get(name)) is not int for name in ("exp", "iat")):
            raise InvalidToken("invalid access token")
        try:
            user_id = uuid.UUID(claims["sub"])
        except (ValueError, TypeError):
            raise InvalidToken("invalid access token") from None
        return AccessClaims(user_id, bool(claims.get("anon")), int(claims["exp"]))


def is_our_token(token: str) -> bool:
    """True if the token claims to be one of ours (a peek at its header, no verification)."""
    try:
        return jwt.get_unverified_header(token).get("kid") == KEY_ID
    except jwt.PyJWTError:
        return False


def malformed_reason(token: str) -> str | None:
    """What is wrong with a bearer token that is not even shaped like a JWT, or None.

    Tells a client author which mistake they made (a refresh token, a quoted or truncated
    token) instead of a generic refusal."""
    hint = "send the `token` from POST /api/auth/anonymous (or a Firebase ID token)"
    parts = token.split(".")
    if len(parts) != 3:
        if len(parts) == 1 and len(token) == len(new_refresh_token()):
            return f"malformed bearer token: this looks like a refresh token; {hint}"
        return (
            f"malformed bearer token: a JWT has three dot-separated parts, this one has {len(parts)}; {hint}"
        )
    if not all(parts) or not all(_BASE64URL.fullmatch(part) for part in parts):
        return f"malformed bearer token: each part must be non-empty base64url (quotes, spaces?); {hint}"
    try:
        jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        return f"malformed bearer token: its header is not base64url-encoded JSON; {hint}"
    return None


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
