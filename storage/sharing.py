"""Share links: a secret token that lets anyone read one loop or song (and open its room)."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.errors import DomainError, NotFound, QuotaExceeded
from storage.models import SharedLink, utcnow

# 24 random bytes: 192 bits, 32 URL-safe characters.
TOKEN_BYTES = 24
MAX_TOKEN_LENGTH = 64
MAX_LIVE_LINKS_PER_DOCUMENT = 50


class ShareState(StrEnum):
    LIVE = "live"
    EXPIRED = "expired"
    REVOKED = "revoked"


@dataclass(frozen=True)
class ShareLookup:
    link: SharedLink
    state: ShareState


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def state_of(link: SharedLink, now: datetime) -> ShareState:
    if link.revoked_at is not None:
        return ShareState.REVOKED
    if link.expires_at is not None and _aware(link.expires_at) <= now:
        return ShareState.EXPIRED
    return ShareState.LIVE


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes for timezone-aware columns; they are UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def create_share(
    session: AsyncSession,
    *,
    resource_type: str,
    resource_id: uuid.UUID,
    created_by: uuid.UUID,
    expires_in: timedelta | None,
) -> SharedLink:
    now = utcnow()
    live = await session.scalar(
        select(func.count())
        .select_from(SharedLink)
        .where(
            SharedLink.resource_type == resource_type,
            SharedLink.resource_id == resource_id,
            SharedLink.revoked_at.is_(None),
        )
    )
    if (live or 0) >= MAX_LIVE_LINKS_PER_DOCUMENT:
        raise QuotaExceeded(
            f"at most {MAX_LIVE_LINKS_PER_DOCUMENT} share links per {resource_type}; revoke one first"
        )
    link = SharedLink(
        resource_type=resource_type,
        resource_id=resource_id,
        share_token=new_token(),
        created_by=created_by,
        created_at=now,
        expires_at=now + expires_in if expires_in is not None else None,
    )
    session.add(link)
    await session.flush()
    return link


async def list_shares(
    session: AsyncSession, *, resource_type: str, resource_id: uuid.UUID
) -> list[SharedLink]:
    """The document's links that were not revoked (expired ones included), newest first."""
    rows = await session.scalars(
        select(SharedLink)
        .where(
            SharedLink.resource_type == resource_type,
            SharedLink.resource_id == resource_id,
            SharedLink.revoked_at.is_(None),
        )
        .order_by(SharedLink.created_at.desc(), SharedLink.id)
    )
    return list(rows)


async def find_share(session: AsyncSession, token: str) -> ShareLookup | None:
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    link = await session.scalar(select(SharedLink).where(SharedLink.share_token == token))
    if link is None:
        return None
    return ShareLookup(link, state_of(link, utcnow()))


async def revoke_share(session: AsyncSession, link: SharedLink) -> None:
    link.revoked_at = utcnow()
    await session.flush()


async def shares_expired_between(
    session: AsyncSession, *, after: datetime, until: datetime
) -> list[tuple[str, uuid.UUID]]:
    """Documents with a link whose expiry fell in ``(after, until]`` (their rooms re-check roles)."""
    rows = await session.execute(
        select(SharedLink.resource_type, SharedLink.resource_id)
        .where(
            SharedLink.revoked_at.is_(None),
            SharedLink.expires_at > after,
            SharedLink.expires_at <= until,
        )
        .distinct()
    )
    return [(kind, resource_id) for kind, resource_id in rows]


class ShareNotFound(NotFound):
    code = "share_not_found"


class ShareExpired(DomainError):
    status = 410
    code = "share_expired"


class ShareRevoked(DomainError):
    status = 410
    code = "share_revoked"


class ShareHidden(DomainError):
    """The shared document was hidden by a moderator (the link itself is still live)."""

    status = 410
    code = "share_unavailable"


def raise_unless_live(lookup: ShareLookup | None) -> SharedLink:
    """The link of a usable token; the distinct error of an unknown, expired or revoked one."""
    if lookup is None:
        raise ShareNotFound("this share link does not exist")
    if lookup.state is ShareState.REVOKED:
        raise ShareRevoked("this share link was revoked by its owner")
    if lookup.state is ShareState.EXPIRED:
        raise ShareExpired("this share link has expired")
    return lookup.link
