"""Who may do what with a loop or song. Used by REST and by the real-time rooms."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from music.roles import Role
from storage.collaborators import collaborator_role
from storage.kinds import resource_type_of
from storage.models import Collaborator, Loop, SharedLink, Song, utcnow


def is_visible(document: Loop | Song, user_id: uuid.UUID | None, *, is_admin: bool = False) -> bool:
    """The moderation rule: hidden content is seen only by its owner and by admins.

    Every read path applies it (REST, rooms, shared links, explore, profiles, comments).
    """
    return document.hidden_at is None or is_admin or (user_id is not None and document.user_id == user_id)


def role_for(document: Loop | Song, user_id: uuid.UUID | None) -> Role | None:
    """The caller's role on ``document`` from ownership, visibility and moderation alone."""
    return AccessRules.of(document).role(user_id)


def role_from(*, owner_id: uuid.UUID, is_public: bool, user_id: uuid.UUID | None) -> Role | None:
    """The same rule for a document known only by its owner and (visible) publicity."""
    return AccessRules(owner_id, is_public, hidden=False).role(user_id)


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


@dataclass(frozen=True)
class AccessRules:
    """What decides every caller's role on one document, except share links: the owner,
    visibility, moderation and the collaborators (all of them, or only the caller's entry).

    A live room keeps the rules of its document, so a socket joining it needs no query; the
    room reloads them whenever an access change is announced on any instance.
    """

    owner_id: uuid.UUID
    is_public: bool
    hidden: bool
    collaborators: Mapping[uuid.UUID, str] = field(default_factory=dict)

    @classmethod
    def of(cls, document: Loop | Song, collaborators: Mapping[uuid.UUID, str] | None = None) -> AccessRules:
        return cls(document.user_id, document.is_public, document.hidden_at is not None, collaborators or {})

    def role(self, user_id: uuid.UUID | None) -> Role | None:
        """The best role from ownership, collaboration and public visibility (share links aside).
        Hidden content is its owner's only (admins are let in by the REST edge)."""
        if user_id is not None and user_id == self.owner_id:
            return Role.OWNER
        if self.hidden:
            return None
        collaborating = self.collaborators.get(user_id) if user_id is not None else None
        if collaborating is not None:
            return Role(collaborating)
        return Role.VIEWER if self.is_public else None


async def load_access_rules(
    session: AsyncSession, model: type[Loop] | type[Song], document_id: uuid.UUID
) -> AccessRules | None:
    """The rules of one document with all its collaborators (two light queries); None if the
    document does not exist."""
    row = (
        await session.execute(
            select(model.user_id, model.is_public, model.hidden_at).where(model.id == document_id)
        )
    ).one_or_none()
    if row is None:
        return None
    collaborators = await session.execute(
        select(Collaborator.user_id, Collaborator.role).where(Collaborator.resource_id == document_id)
    )
    return AccessRules(
        row.user_id, row.is_public, row.hidden_at is not None, {user: role for user, role in collaborators}
    )


async def role_with_share(
    session: AsyncSession,
    rules: AccessRules,
    *,
    resource_type: str,
    resource_id: uuid.UUID,
    user_id: uuid.UUID | None,
    share_token: str | None,
) -> Role | None:
    """The caller's role under ``rules``, or VIEWER through a live share token."""
    role = rules.role(user_id)
    if role is None and share_token and not rules.hidden:
        if await share_grants_access(
            session, resource_type=resource_type, resource_id=resource_id, share_token=share_token
        ):
            return Role.VIEWER
    return role


async def resolve_role(
    session: AsyncSession,
    document: Loop | Song,
    *,
    user_id: uuid.UUID | None,
    share_token: str | None = None,
) -> Role | None:
    """The best role the caller holds: ownership, a collaborator role, public visibility or
    a share token."""
    collaborators: dict[uuid.UUID, str] = {}
    if user_id is not None and user_id != document.user_id and document.hidden_at is None:
        collaborating = await collaborator_role(session, resource_id=document.id, user_id=user_id)
        if collaborating is not None:
            collaborators[user_id] = collaborating
    return await role_with_share(
        session,
        AccessRules.of(document, collaborators),
        resource_type=resource_type_of(document),
        resource_id=document.id,
        user_id=user_id,
        share_token=share_token,
    )


async def readable_loops(
    session: AsyncSession, *, ids: Iterable[uuid.UUID], user_id: uuid.UUID | None
) -> list[Loop]:
    """The loops among ``ids`` that the caller may read (own, collaborating, or public),
    by the same rules as one document's role; two queries whatever the number of ids."""
    wanted = list(set(ids))
    if not wanted:
        return []
    rows = list(await session.scalars(select(Loop).where(Loop.id.in_(wanted))))
    collaborating: dict[uuid.UUID, dict[uuid.UUID, str]] = {}
    if user_id is not None:
        found = await session.execute(
            select(Collaborator.resource_id, Collaborator.role).where(
                Collaborator.resource_id.in_([row.id for row in rows]), Collaborator.user_id == user_id
            )
        )
        collaborating = {resource_id: {user_id: role} for resource_id, role in found}
    return [row for row in rows if AccessRules.of(row, collaborating.get(row.id)).role(user_id) is not None]
