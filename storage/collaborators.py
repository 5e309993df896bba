"""Collaborators: users other than the owner with an ``editor`` or ``viewer`` role."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.errors import Conflict, DomainError, NotFound
from storage.models import Collaborator, User, utcnow

MAX_COLLABORATORS = 100


class CannotAddSelf(DomainError):
    status = 400
    code = "cannot_add_self"


class UnknownUser(NotFound):
    code = "user_not_found"


class NotACollaborator(NotFound):
    code = "collaborator_not_found"


class AlreadyCollaborator(Conflict):
    code = "already_collaborator"


@dataclass(frozen=True)
class CollaboratorEntry:
    user_id: uuid.UUID
    username: str | None
    display_name: str | None
    avatar_url: str | None
    role: str


async def collaborator_role(
    session: AsyncSession, *, resource_id: uuid.UUID, user_id: uuid.UUID
) -> str | None:
    role: str | None = await session.scalar(
        select(Collaborator.role).where(
            Collaborator.resource_id == resource_id, Collaborator.user_id == user_id
        )
    )
    return role


async def list_collaborators(session: AsyncSession, *, resource_id: uuid.UUID) -> list[CollaboratorEntry]:
    rows = await session.execute(
        select(User.id, User.username, User.display_name, User.avatar_url, Collaborator.role)
        .join(User, User.id == Collaborator.user_id)
        .where(Collaborator.resource_id == resource_id)
        .order_by(Collaborator.created_at, User.username)
    )
    return [CollaboratorEntry(*row) for row in rows]


async def _user_by_username(session: AsyncSession, username: str) -> User:
    user = await session.scalar(select(User).where(User.username == username))
    if user is None:
        raise UnknownUser(f"no user is called {username!r}")
    return user


async def add_collaborator(
    session: AsyncSession,
    *,
    resource_type: str,
    resource_id: uuid.UUID,
    owner_id: uuid.UUID,
    username: str,
    role: str,
) -> CollaboratorEntry:
    user = await _user_by_username(session, username)
    if user.id == owner_id:
        raise CannotAddSelf("you own this document; add someone else")
    if await collaborator_role(session, resource_id=resource_id, user_id=user.id) is not None:
        raise AlreadyCollaborator(f"{username!r} is already a collaborator; PATCH their role instead")
    existing = await list_collaborators(session, resource_id=resource_id)
    if len(existing) >= MAX_COLLABORATORS:
        raise Conflict(f"at most {MAX_COLLABORATORS} collaborators per {resource_type}")
    session.add(
        Collaborator(
            resource_type=resource_type,
            resource_id=resource_id,
            user_id=user.id,
            role=role,
            created_at=utcnow(),
        )
    )
    try:
        await session.flush()
    except IntegrityError:  # a concurrent add of the same user won the race
        raise AlreadyCollaborator(f"{username!r} is already a collaborator") from None
    return CollaboratorEntry(user.id, user.username, user.display_name, user.avatar_url, role)


async def _membership(
    session: AsyncSession, resource_id: uuid.UUID, username: str
) -> tuple[User, Collaborator]:
    user = await _user_by_username(session, username)
    row = await session.scalar(
        select(Collaborator).where(Collaborator.resource_id == resource_id, Collaborator.user_id == user.id)
    )
    if row is None:
        raise NotACollaborator(f"{username!r} is not a collaborator")
    return user, row


async def set_role(
    session: AsyncSession, *, resource_id: uuid.UUID, username: str, role: str
) -> CollaboratorEntry:
    user, row = await _membership(session, resource_id, username)
    row.role = role
    await session.flush()
    return CollaboratorEntry(user.id, user.username, user.display_name, user.avatar_url, role)


async def remove_collaborator(session: AsyncSession, *, resource_id: uuid.UUID, username: str) -> uuid.UUID:
    """Remove ``username``'s role; their user id."""
    user, row = await _membership(session, resource_id, username)
    await session.delete(row)
    await session.flush()
    return user.id
