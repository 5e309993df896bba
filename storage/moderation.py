"""Moderation: admins, reports, and hiding content (the rule itself is storage.access.is_visible).

Admins are users with ``is_admin`` set (``musicplayground admin grant``) or listed in the
``ADMIN_USER_IDS`` setting. It is read from the database on every check, so a grant or a
revoke takes effect at once, on every instance.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.access import role_for
from storage.errors import Conflict, DomainError, NotFound, Unauthorized
from storage.kinds import RESOURCE_MODELS, document_model
from storage.models import Comment, Loop, Report, Song, User, utcnow

MODERATED_MODELS: dict[str, type[Loop] | type[Song] | type[User] | type[Comment]] = {
    **RESOURCE_MODELS,
    "user": User,
    "comment": Comment,
}


class InvalidReport(DomainError):
    code = "invalid_report"


_REPORTER_GONE = "this account no longer exists"


async def is_admin(
    session: AsyncSession, user_id: uuid.UUID | None, admin_ids: Collection[uuid.UUID]
) -> bool:
    if user_id is None:
        return False
    if user_id in admin_ids:
        return True
    return bool(await session.scalar(select(User.is_admin).where(User.id == user_id)))


async def admin_ids(session: AsyncSession, configured: Collection[uuid.UUID]) -> frozenset[uuid.UUID]:
    """Every admin now: ``users.is_admin`` and the ``ADMIN_USER_IDS`` setting."""
    granted = (await session.execute(select(User.id).where(User.is_admin.is_(True)))).scalars()
    return frozenset(granted) | frozenset(configured)


async def find_user(session: AsyncSession, username_or_id: str) -> User | None:
    """A user by id, or by username (case-insensitive)."""
    try:
        return await session.get(User, uuid.UUID(username_or_id))
    except ValueError:
        pass
    return (
        await session.execute(select(User).where(func.lower(User.username) == username_or_id.lower()))
    ).scalar_one_or_none()


async def set_admin(session: AsyncSession, username_or_id: str, value: bool) -> User:
    user = await find_user(session, username_or_id)
    if user is None:
        raise NotFound(f"no user {username_or_id!r}")
    user.is_admin = value
    await session.flush()
    return user


async def get_resource(
    session: AsyncSession, resource_type: str, resource_id: uuid.UUID
) -> Loop | Song | User | Comment | None:
    return await session.get(MODERATED_MODELS[resource_type], resource_id)


def resource_owner(resource: Loop | Song | User | Comment) -> uuid.UUID:
    if isinstance(resource, User):
        return resource.id
    if isinstance(resource, Comment):
        return resource.author_id
    return resource.user_id


async def _reportable(
    session: AsyncSession, resource: Loop | Song | User | Comment | None, reporter_id: uuid.UUID
) -> bool:
    """Whether the reporter can see the resource (else it does not exist for them)."""
    if resource is None:
        return False
    if isinstance(resource, Loop | Song):
        return role_for(resource, reporter_id) is not None
    if isinstance(resource, User):
        return resource.hidden_at is None
    if resource.hidden_at is not None and resource.author_id != reporter_id:
        return False
    document: Loop | Song | None = await session.get(
        document_model(resource.resource_type), resource.resource_id
    )
    return document is not None and role_for(document, reporter_id) is not None


async def create_report(
    session: AsyncSession,
    *,
    reporter_id: uuid.UUID,
    resource_type: str,
    resource_id: uuid.UUID,
    reason: str,
) -> Report:
    """A new open report. Unauthorized if the reporter's account is gone (purged, deleted: its
    access token may still be valid), NotFound if the reporter cannot see the resource,
    Conflict only if this reporter really did report it already."""
    if await session.scalar(select(User.id).where(User.id == reporter_id)) is None:
        raise Unauthorized(_REPORTER_GONE)
    resource = await get_resource(session, resource_type, resource_id)
    if not await _reportable(session, resource, reporter_id):
        raise NotFound(f"{resource_type} not found")
    assert resource is not None
    if resource_owner(resource) == reporter_id:
        raise InvalidReport(f"you cannot report your own {resource_type}")
    report = Report(
        reporter_id=reporter_id, resource_type=resource_type, resource_id=resource_id, reason=reason
    )
    try:
        async with session.begin_nested():
            session.add(report)
            await session.flush()
    except IntegrityError:
        # Either the unique key (a report of the same resource) or the reporter's foreign key
        # (the account was purged meanwhile): say which, never a conflict that did not happen.
        existing = await session.scalar(
            select(Report.id).where(
                Report.reporter_id == reporter_id,
                Report.resource_type == resource_type,
                Report.resource_id == resource_id,
            )
        )
        if existing is not None:
            raise Conflict(f"you already reported this {resource_type}") from None
        raise Unauthorized(_REPORTER_GONE) from None
    return report


async def list_reports(
    session: AsyncSession, *, status: str | None, offset: int, limit: int
) -> tuple[list[Report], int]:
    where = [Report.status == status] if status else []
    rows = (
        await session.execute(
            select(Report).where(*where).order_by(Report.created_at, Report.id).offset(offset).limit(limit)
        )
    ).scalars()
    total = await session.scalar(select(func.count()).select_from(Report).where(*where))
    return list(rows), int(total or 0)


@dataclass(frozen=True)
class VisibilityChange:
    """A resource after a hide or unhide, and whether it was hidden before."""

    resource: Loop | Song | User | Comment
    was_hidden: bool


async def set_hidden(
    session: AsyncSession, resource_type: str, resource_id: uuid.UUID, *, reason: str | None
) -> VisibilityChange:
    """Hide (``reason`` given) or unhide (``None``) a resource."""
    resource = await get_resource(session, resource_type, resource_id)
    if resource is None:
        raise NotFound(f"{resource_type} not found")
    was_hidden = resource.hidden_at is not None
    resource.hidden_at = utcnow() if reason is not None else None
    resource.hidden_reason = reason
    await session.flush()
    return VisibilityChange(resource, was_hidden)


async def resolve_report(
    session: AsyncSession, *, report_id: uuid.UUID, action: str, admin_id: uuid.UUID, reason: str | None
) -> tuple[Report, VisibilityChange | None]:
    """Resolve a report and every other open report of the same resource.

    ``hide`` hides the resource (with ``reason``, default ``"reported"``); ``dismiss`` does
    nothing else. Returns the report and, if it was hidden, the change.
    """
    report = await session.get(Report, report_id)
    if report is None:
        raise NotFound("report not found")
    hidden = None
    if action == "hide":
        hidden = await set_hidden(
            session, report.resource_type, report.resource_id, reason=reason or "reported"
        )
    values: dict[str, Any] = {
        "status": "resolved",
        "resolution": action,
        "resolved_by": admin_id,
        "resolved_at": utcnow(),
    }
    await session.execute(
        update(Report)
        .where(
            Report.resource_type == report.resource_type,
            Report.resource_id == report.resource_id,
            (Report.status == "open") | (Report.id == report.id),
        )
        .values(**values)
    )
    await session.refresh(report)
    return report, hidden
