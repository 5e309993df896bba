"""Our own tokens: short-lived signed access tokens and opaque refresh tokens.

Access tokens are HS256 JWTs (verified without a database round trip). Refresh tokens
are random strings; only their SHA-256 is stored, so a database leak cannot mint sessions.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass

import jwt

from identity.errors import InvalidToken

ISSUER = "musicplayground"
AUDIENCE = "musicplayground-api"
# In the JWT header, so telling our tokens from Firebase's needs no payload decoding.
KEY_ID = "musicplayground-hs256"


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
            raise InvalidToken("access token expired; refresh it") from None
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


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
