"""The Authenticator's cache of verified access tokens keeps every verdict of the token itself."""

from __future__ import annotations

import asyncio
import time

import jwt
import pytest

from identity.authenticator import Authenticator
from identity.errors import InvalidToken
from identity.tokens import TokenIssuer
from storage.database import Database
from storage.users import create_anonymous_user
from tests.conftest import TEST_SECRET


async def test_a_verified_token_still_expires(database_url: str) -> None:
    async with Database(database_url) as db:
        async with db.write_session() as session:
            user = await create_anonymous_user(session)
        auth = Authenticator(TokenIssuer(TEST_SECRET, access_ttl=1), None, db)
        token = auth.tokens.issue_access(user.id, is_anonymous=True)
        expires_at = jwt.decode(token, options={"verify_signature": False})["exp"]
        for _ in range(2):  # verified, then from the cache
            caller = await auth.authenticate(token)
            assert (caller.user_id, caller.is_anonymous) == (user.id, True)
        await asyncio.sleep(max(0.0, expires_at - time.time()) + 0.05)
        with pytest.raises(InvalidToken, match="expired"):
            await auth.authenticate(token)


async def test_a_tampered_copy_of_a_verified_token_is_refused(database_url: str) -> None:
    async with Database(database_url) as db:
        async with db.write_session() as session:
            user = await create_anonymous_user(session)
        auth = Authenticator(TokenIssuer(TEST_SECRET), None, db)
        token = auth.tokens.issue_access(user.id, is_anonymous=True)
        await auth.authenticate(token)
        header, payload, signature = token.split(".")
        forged = ".".join((header, payload, signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")))
        with pytest.raises(InvalidToken):
            await auth.authenticate(forged)
