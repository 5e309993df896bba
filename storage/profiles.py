"""Public profiles: usernames and the fields a user shows to others."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.errors import Conflict
from storage.models import User, utcnow

PROFILE_COLUMNS = frozenset({"username", "display_name", "avatar_url", "bio"})


async def user_by_username(session: AsyncSession, username: str) -> User | None:
    """The account with this username (case-insensitive), hidden or not."""
    return (
        await session.execute(select(User).where(func.lower(User.username) == username.lower()))
    ).scalar_one_or_none()


async def update_profile(session: AsyncSession, user: User, values: dict[str, Any]) -> User:
    """Set profile fields (``None`` clears one). A username taken by another account -> Conflict.

    Usernames are stored lower-case, so the unique constraint is case-insensitive.
    """
    unknown = set(values) - PROFILE_COLUMNS
    if unknown:
        raise ValueError(f"not profile fields: {sorted(unknown)}")
    username = values.get("username")
    if username is not None:
        holder = await user_by_username(session, username)
        if holder is not None and holder.id != user.id:
            raise Conflict(f"the username {username!r} is taken")
    for key, value in values.items():
        setattr(user, key, value)
    user.updated_at = utcnow()
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:  # taken by a concurrent request between the check and the write
        raise Conflict(f"the username {username!r} is taken") from None
    return user
