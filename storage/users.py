"""Users and their refresh-token chains."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage.database import Database
from storage.errors import Conflict, Unauthorized
from storage.models import (
    Comment,
    Loop,
    MigrationMapping,
    RefreshToken,
    Sample,
    SharedLink,
    Song,
    User,
    utcnow,
)


async def create_anonymous_user(session: AsyncSession) -> User:
    user = User(is_anonymous=True)
    session.add(user)
    await session.flush()
    return user


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id)


# One user's shown name (``shown_names`` runs it once per user): built once, compiled once.
_SHOWN_NAME = select(User.id, User.display_name, User.username).where(
    User.id == bindparam("id", type_=User.id.type)
)


# For Database.keep_warm: the read finding nothing.
SHOWN_NAME_WARM_READ = (_SHOWN_NAME, {"id": uuid.UUID(int=0)})


async def shown_names(db: Database, user_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    """How these users appear to collaborators (presence, cursors); users that do not exist
    are left out. Read straight on the driver (joins ask for them in storms)."""
    rows = await db.read_each(_SHOWN_NAME, [{"id": user_id} for user_id in user_ids])
    return {
        user_id: display_name or username or f"Anonymous {str(user_id)[:4]}"
        for user_id, display_name, username in rows
    }


async def get_user_by_firebase_uid(session: AsyncSession, uid: str) -> User | None:
    return (await session.execute(select(User).where(User.firebase_uid == uid))).scalar_one_or_none()


async def _email_is_free(session: AsyncSession, email: str | None, *, for_user: uuid.UUID | None) -> bool:
    if not email:
        return False
    owner = (await session.execute(select(User.id).where(User.email == email))).scalar_one_or_none()
    return owner is None or owner == for_user


async def _attach_identity(
    session: AsyncSession,
    user: User,
    *,
    uid: str,
    email: str | None,
    display_name: str | None,
    avatar_url: str | None,
) -> None:
    """Mark ``user`` as signed in with ``uid``, filling profile fields it does not have yet
    (the e-mail only if no other account holds it)."""
    email_free = await _email_is_free(session, email, for_user=user.id)
    user.firebase_uid = uid
    user.is_anonymous = False
    if email_free:
        user.email = email
    user.display_name = user.display_name or (display_name[:100] if display_name else None)
    user.avatar_url = user.avatar_url or (avatar_url[:2048] if avatar_url else None)


async def get_or_create_firebase_user(
    session: AsyncSession,
    *,
    uid: str,
    email: str | None,
    display_name: str | None,
    avatar_url: str | None,
) -> User:
    """The account of a Firebase identity, created on first sight."""
    user = await get_user_by_firebase_uid(session, uid)
    if user is not None:
        return user
    user = User(is_anonymous=False)
    await _attach_identity(
        session, user, uid=uid, email=email, display_name=display_name, avatar_url=avatar_url
    )
    session.add(user)
    await session.flush()
    return user


async def link_firebase_identity(
    session: AsyncSession,
    *,
    user: User,
    uid: str,
    email: str | None,
    display_name: str | None,
    avatar_url: str | None,
) -> User:
    """Attach a Firebase identity to ``user``; returns the account that now holds the data.

    If the identity already has an account, everything the anonymous ``user`` owns moves
    into that account and the anonymous account is removed. Nothing is lost.
    """
    if user.firebase_uid == uid:
        return user
    if not user.is_anonymous:
        raise Conflict("this account is already linked to another sign-in identity")
    existing = await get_user_by_firebase_uid(session, uid)
    if existing is None:
        await _attach_identity(
            session, user, uid=uid, email=email, display_name=display_name, avatar_url=avatar_url
        )
        await session.flush()
        return user
    for model in (Loop, Song, Sample):
        await session.execute(update(model).where(model.user_id == user.id).values(user_id=existing.id))
    await _move_community_data(session, from_user=user.id, to_user=existing.id)
    await session.execute(
        update(SharedLink).where(SharedLink.created_by == user.id).values(created_by=existing.id)
    )
    existing.updated_at = utcnow()
    await session.execute(delete(User).where(User.id == user.id))
    await session.flush()
    return existing


async def _move_community_data(session: AsyncSession, *, from_user: uuid.UUID, to_user: uuid.UUID) -> None:
    """Comments and localStorage id mappings follow the data into the merged account (a
    local id the target already migrated keeps the target's mapping)."""
    await session.execute(update(Comment).where(Comment.author_id == from_user).values(author_id=to_user))
    target = aliased(MigrationMapping)
    taken = exists().where(
        target.user_id == to_user,
        target.kind == MigrationMapping.kind,
        target.local_id == MigrationMapping.local_id,
    )
    await session.execute(
        update(MigrationMapping).where(MigrationMapping.user_id == from_user, ~taken).values(user_id=to_user)
    )


# --- refresh tokens -------------------------------------------------------------------


class RefreshTokenReused(Unauthorized):
    """A refresh token was presented twice: its whole chain must be revoked."""

    code = "refresh_token_reused"

    def __init__(self, family_id: uuid.UUID) -> None:
        super().__init__("refresh token was already used; sign in again")
        self.family_id = family_id


async def store_refresh_token(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    token_hash: str,
    ttl_seconds: int,
    family_id: uuid.UUID | None = None,
) -> RefreshToken:
    row = RefreshToken(
        user_id=user_id,
        family_id=family_id or uuid.uuid4(),
        token_hash=token_hash,
        expires_at=utcnow() + timedelta(seconds=ttl_seconds),
    )
    session.add(row)
    await session.flush()
    return row


def _aware(value: datetime) -> datetime:
    # SQLite hands timestamps back without a zone; we only ever store UTC.
    return value if value.tzinfo else value.replace(tzinfo=utcnow().tzinfo)


async def consume_refresh_token(session: AsyncSession, token_hash: str) -> RefreshToken:
    """Mark a refresh token used, exactly once. Raises Unauthorized / RefreshTokenReused."""
    row = (
        await session.execute(select(RefreshToken).where(RefreshToken.token_hash == token_hash))
    ).scalar_one_or_none()
    if row is None or row.revoked_at is not None:
        raise Unauthorized("invalid or revoked refresh token")
    if _aware(row.expires_at) <= utcnow():
        raise Unauthorized("refresh token expired; sign in again")
    # Compare-and-set, so two concurrent refreshes with one token cannot both win.
    claimed = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == row.id, RefreshToken.used_at.is_(None))
        .values(used_at=utcnow())
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise RefreshTokenReused(row.family_id)
    return row


async def revoke_refresh_family(session: AsyncSession, family_id: uuid.UUID) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


async def revoke_refresh_token(session: AsyncSession, token_hash: str) -> None:
    """Sign-out: revoke the chain this token belongs to."""
    row = (
        await session.execute(select(RefreshToken).where(RefreshToken.token_hash == token_hash))
    ).scalar_one_or_none()
    if row is not None:
        await revoke_refresh_family(session, row.family_id)


async def touch_last_seen(session: AsyncSession, user_id: uuid.UUID) -> None:
    await session.execute(update(User).where(User.id == user_id).values(last_seen_at=utcnow()))


async def mark_seen(session: AsyncSession, user_id: uuid.UUID, *, not_since: timedelta) -> None:
    """Set ``last_seen_at`` to now unless it is already within ``not_since`` (the condition
    keeps every instance together to one write per user per interval)."""
    now = utcnow()
    await session.execute(
        update(User).where(User.id == user_id, User.last_seen_at < now - not_since).values(last_seen_at=now)
    )
