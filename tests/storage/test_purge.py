"""Purging inactive anonymous accounts, on both backends: what goes, what always stays."""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg
from sqlalchemy import func, select, update

from identity.authenticator import Authenticator
from identity.tokens import TokenIssuer
from storage import document_store
from storage.database import Database
from storage.library import create_document
from storage.models import DocumentUpdate, Loop, RefreshToken, Sample, SharedLink, Song, User, utcnow
from storage.purge import PURGE_LOCK_KEY, PurgedAccount, purge_anonymous_accounts, purge_with_lock
from storage.users import store_refresh_token
from tests.conftest import TEST_SECRET
from tests.storage.test_document_store import LOOP_VALUES, SONG_VALUES

OLD = timedelta(days=120)


async def make_account(
    db: Database, *, idle: timedelta, firebase_uid: str | None = None, anonymous: bool = True
) -> uuid.UUID:
    """An account last seen ``idle`` ago, owning a loop, a song, a sample, a share, a refresh
    token and update-log entries for both documents."""
    async with db.write_session() as session:
        user = User(is_anonymous=anonymous, firebase_uid=firebase_uid)
        session.add(user)
        await session.flush()
        loop = await create_document(session, Loop, user_id=user.id, values=dict(LOOP_VALUES), quota=10)
        song = await create_document(session, Song, user_id=user.id, values=dict(SONG_VALUES), quota=10)
        session.add(
            Sample(
                user_id=user.id,
                name="kick",
                file_url="/files/kick.wav",
                storage_key=f"samples/{user.id}/kick.wav",
                file_size=1000,
                mime_type="audio/wav",
            )
        )
        session.add(
            SharedLink(
                resource_type="loop", resource_id=loop.id, share_token=uuid.uuid4().hex, created_by=user.id
            )
        )
        await store_refresh_token(session, user_id=user.id, token_hash=uuid.uuid4().hex, ttl_seconds=3600)
        await document_store.append_updates(
            session, [("loop", loop.id, b"\x00\x00"), ("song", song.id, b"\x00\x00")]
        )
        await session.execute(update(User).where(User.id == user.id).values(last_seen_at=utcnow() - idle))
        return user.id


async def rows_of(db: Database, user_id: uuid.UUID) -> dict[str, int]:
    async with db.session() as session:

        async def count(query: object) -> int:
            return int(await session.scalar(query) or 0)  # type: ignore[call-overload]

        doc_ids = [
            *(await session.scalars(select(Loop.id).where(Loop.user_id == user_id))).all(),
            *(await session.scalars(select(Song.id).where(Song.user_id == user_id))).all(),
        ]
        return {
            "users": await count(select(func.count()).where(User.id == user_id)),
            "loops": await count(select(func.count()).where(Loop.user_id == user_id)),
            "songs": await count(select(func.count()).where(Song.user_id == user_id)),
            "samples": await count(select(func.count()).where(Sample.user_id == user_id)),
            "shares": await count(select(func.count()).where(SharedLink.created_by == user_id)),
            "refresh_tokens": await count(select(func.count()).where(RefreshToken.user_id == user_id)),
            "log": len(doc_ids)
            and await count(select(func.count()).where(DocumentUpdate.resource_id.in_(doc_ids))),
        }


async def test_purges_only_inactive_anonymous_accounts_with_all_their_rows(database_url: str) -> None:
    async with Database(database_url) as db:
        stale = await make_account(db, idle=OLD)
        recent = await make_account(db, idle=timedelta(days=10))
        linked = await make_account(db, idle=OLD, anonymous=False, firebase_uid="firebase-linked")
        # Half-linked (a Firebase uid but still flagged anonymous): never purged either.
        odd = await make_account(db, idle=OLD, firebase_uid="firebase-odd")
        async with db.session() as session:
            stale_docs = (await session.scalars(select(Loop.id).where(Loop.user_id == stale))).all()

        preview = await purge_anonymous_accounts(db, inactive_days=90, dry_run=True)
        assert [a.user_id for a in preview] == [stale]
        assert (preview[0].loops, preview[0].songs, preview[0].samples) == (1, 1, 1)
        assert (await rows_of(db, stale))["users"] == 1  # a dry run removes nothing

        seen: list[PurgedAccount] = []

        async def hook(account: PurgedAccount) -> None:
            seen.append(account)

        purged = await purge_anonymous_accounts(db, inactive_days=90, on_purged=hook)
        assert [a.user_id for a in purged] == [stale] == [a.user_id for a in seen]
        assert seen[0].sample_storage_keys == (f"samples/{stale}/kick.wav",)
        assert set((await rows_of(db, stale)).values()) == {0}
        async with db.session() as session:
            left = await session.scalar(
                select(func.count()).where(DocumentUpdate.resource_id.in_(stale_docs))
            )
        assert left == 0
        full = {"users": 1, "loops": 1, "songs": 1, "samples": 1, "shares": 1, "refresh_tokens": 1, "log": 2}
        for kept in (recent, linked, odd):
            assert await rows_of(db, kept) == full
        # A shorter retention now reaches the recent account, never the signed-in ones.
        assert [a.user_id for a in await purge_anonymous_accounts(db, inactive_days=5)] == [recent]
        assert await rows_of(db, linked) == full and await rows_of(db, odd) == full


async def test_authenticated_use_keeps_an_account_and_is_written_at_most_hourly(database_url: str) -> None:
    async with Database(database_url) as db:
        user_id = await make_account(db, idle=OLD)
        issuer = TokenIssuer(TEST_SECRET)
        auth = Authenticator(issuer, None, db)
        token = issuer.issue_access(user_id, is_anonymous=True)

        async def last_seen() -> object:
            async with db.session() as session:
                return await session.scalar(select(User.last_seen_at).where(User.id == user_id))

        await auth.authenticate(token)
        assert await purge_anonymous_accounts(db, inactive_days=90) == []  # seen just now
        # Within the hour, further requests write nothing, even if the row says otherwise.
        async with db.write_session() as session:
            await session.execute(update(User).where(User.id == user_id).values(last_seen_at=utcnow() - OLD))
        stale_value = await last_seen()
        for _ in range(5):
            await auth.authenticate(token)
        assert await last_seen() == stale_value  # no write per request
        assert [a.user_id for a in await purge_anonymous_accounts(db, inactive_days=90)] == [user_id]


async def test_one_instance_purges_at_a_time(database_url: str, backend: str) -> None:
    async with Database(database_url) as db:
        stale = await make_account(db, idle=OLD)
        if backend == "postgres":
            other = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://", 1))
            try:
                assert await other.fetchval("SELECT pg_try_advisory_lock($1)", PURGE_LOCK_KEY)
                assert await purge_with_lock(db, inactive_days=90) is None
                assert (await rows_of(db, stale))["users"] == 1
            finally:
                await other.close()
        purged = await purge_with_lock(db, inactive_days=90)
        assert purged is not None and [a.user_id for a in purged] == [stale]
