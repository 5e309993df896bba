"""Who may do what with a loop or song. Used by REST and by the real-time rooms."""

from __future__ import annotations

import uuid
from enum import StrEnum

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.collaborators import collaborator_role
from storage.kinds import resource_type_of
from storage.models import Loop, SharedLink, Song, utcnow


class Role(StrEnum):
    OWNER = "owner"
    EDITOR = "editor"
    VIEWER = "viewer"

    @property
    def can_write(self) -> bool:
        return self in (Role.OWNER, Role.EDITOR)


def is_visible(document: Loop | Song, user_id: uuid.UUID | None, *, is_admin: bool = False) -> bool:
    """The moderation rule: hidden content is seen only by its owner and by admins.

    Every read path applies it (REST, rooms, shared links, explore, profiles, comments).
    """
    return document.hidden_at is None or is_admin or (user_id is not None and document.user_id == user_id)


def role_for(document: Loop | Song, user_id: uuid.UUID | None) -> Role | None:
    """The caller's role on ``document`` from ownership, visibility and moderation alone."""
    return role_from(
        owner_id=document.user_id,
        is_public=document.is_public and is_visible(document, None),
        user_id=user_id,
    )


def role_from(*, owner_id: uuid.UUID, is_public: bool, user_id: uuid.UUID | None) -> Role | None:
    if user_id is not None and owner_id == user_id:
        return Role.OWNER
    if is_public:
        return Role.VIEWER
    return None


async def share_grants_access(
    session: AsyncSession, *, resource_type: str, resource_id: uuid.UUID, share_token: str
) -> bool:
    """A share token that is live (not revoked, not expired) for this document."""
    now = utcnow()
    found = await session.scalar(
        select(SharedLink.id).where(
            SharedLink.share_token == share_token,
            SharedLink.resource_type == resource_type,
            SharedLink.resource_id == resource_id,
            SharedLink.revoked_at.is_(None),
            or_(SharedLink.expires_at.is_(None), SharedLink.expires_at > now),
        )
    )
    return found is not None


async def resolve_role(
    session: AsyncSession,
    document: Loop | Song,
    *,
    user_id: uuid.UUID | None,
    share_token: str | None = None,
) -> Role | None:
    """The best role the caller holds: ownership, a collaborator role, public visibility or
    a share token."""
    role = role_for(document, user_id)
    if role is Role.OWNER or not is_visible(document, user_id):
        return role  # hidden content: only its owner (admins are let in by the REST edge)
    if user_id is not None:
        collaborating = await collaborator_role(session, resource_id=document.id, user_id=user_id)
        if collaborating is not None:
            return Role(collaborating)
    if role is not None:
        return role
    if share_token:
        if await share_grants_access(
            session,
            resource_type=resource_type_of(document),
            resource_id=document.id,
            share_token=share_token,
        ):
            return Role.VIEWER
    return None
