"""Who a bearer token belongs to: our access tokens and Firebase ID tokens, mapped to users.

Shared by the REST edge and the real-time handshake.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import timedelta

from cachetools import TLRUCache

from identity.errors import InvalidToken
from identity.firebase import FirebaseVerifier
from identity.tokens import TokenIssuer, is_our_token, malformed_reason
from storage.database import Database
from storage.users import get_or_create_firebase_user, mark_seen

log = logging.getLogger(__name__)


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
        seen_interval: float = 3600,
    ) -> None:
        self.tokens = tokens
        self.firebase = firebase
        self._db = db
        self._cache_size = cache_size
        # Firebase uid -> our user id; saves a database round trip per request.
        self._user_ids: OrderedDict[str, uuid.UUID] = OrderedDict()
        # When this process last wrote each user's last_seen_at (monotonic seconds).
        self._seen_interval = seen_interval
        self._seen: OrderedDict[uuid.UUID, float] = OrderedDict()
        # Our access tokens already verified -> (caller, expiry). One is valid until it
        # expires on every instance alike (there is no revocation list; a deleted account is
        # checked where it matters), so this only saves the signature check and claim
        # parsing, ~0.17 ms a request. Entries leave at the token's expiry.
        self._verified: TLRUCache[str, tuple[Caller, int]] = TLRUCache(
            maxsize=cache_size, ttu=lambda _token, entry, _now: entry[1], timer=time.time
        )

    async def authenticate(self, token: str) -> Caller:
        verified = self._verified.get(token)
        if verified is not None:
            caller = verified[0]
        elif is_our_token(token):
            claims = self.tokens.verify_access(token)
            caller = Caller(claims.user_id, claims.is_anonymous)
            self._verified[token] = (caller, claims.expires_at)
        else:
            problem = malformed_reason(token)
            if problem is not None:
                raise InvalidToken(problem)
            caller = await self._firebase_caller(token)
        await self._saw(caller.user_id)
        return caller

    async def _saw(self, user_id: uuid.UUID) -> None:
        """Record activity (what keeps anonymous accounts from being purged): at most once per
        ``seen_interval`` per user, and never a failed request because of it."""
        now = time.monotonic()
        last = self._seen.get(user_id)
        if last is not None and now - last < self._seen_interval:
            return
        self._seen[user_id] = now
        self._seen.move_to_end(user_id)
        while len(self._seen) > self._cache_size:
            self._seen.popitem(last=False)
        try:
            async with self._db.write_session() as session:
                await mark_seen(session, user_id, not_since=timedelta(seconds=self._seen_interval))
        except Exception:
            log.warning("could not record that user %s was seen", user_id, exc_info=True)

    async def _firebase_caller(self, id_token: str) -> Caller:
        if self.firebase is None:
            raise InvalidToken(
                "this token was not issued by this server, and Firebase sign-in is not enabled here; "
                "send the `token` from POST /api/auth/anonymous"
            )
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
