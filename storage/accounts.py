"""Who a bearer token belongs to: our access tokens and Firebase ID tokens, mapped to users.

Shared by the REST edge and the real-time handshake.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass

from identity.errors import InvalidToken
from identity.firebase import FirebaseVerifier
from identity.tokens import TokenIssuer, is_our_token
from storage.database import Database
from storage.users import get_or_create_firebase_user


@dataclass(frozen=True)
class Caller:
    user_id: uuid.UUID
    is_anonymous: bool


class Authenticator:
    """Turns a bearer token into a :class:`Caller` (or raises ``InvalidToken``)."""

    def __init__(
        self,
        tokens: TokenIssuer,
        firebase: FirebaseVerifier | None,
        db: Database,
        *,
        cache_size: int = 10_000,
    ) -> None:
        self.tokens = tokens
        self.firebase = firebase
        self._db = db
        self._cache_size = cache_size
        # Firebase uid -> our user id; saves a database round trip per request.
        self._user_ids: OrderedDict[str, uuid.UUID] = OrderedDict()

    async def authenticate(self, token: str) -> Caller:
        if is_our_token(token):
            claims = self.tokens.verify_access(token)
            return Caller(claims.user_id, claims.is_anonymous)
        return await self._firebase_caller(token)

    async def _firebase_caller(self, id_token: str) -> Caller:
        if self.firebase is None:
            raise InvalidToken("Firebase sign-in is not enabled on this server")
        identity = await self.firebase.verify(id_token)
        user_id = self._user_ids.get(identity.uid)
        if user_id is None:
            async with self._db.write_session() as session:
                user = await get_or_create_firebase_user(
                    session,
                    uid=identity.uid,
                    email=identity.email,
                    display_name=identity.display_name,
                    avatar_url=identity.avatar_url,
                )
                user_id = user.id
        self.remember(identity.uid, user_id)
        return Caller(user_id, is_anonymous=False)

    def remember(self, uid: str, user_id: uuid.UUID) -> None:
        """Record (or refresh) which account a Firebase identity maps to."""
        self._user_ids[uid] = user_id
        self._user_ids.move_to_end(uid)
        while len(self._user_ids) > self._cache_size:
            self._user_ids.popitem(last=False)
