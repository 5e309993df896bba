"""Comments on loops and songs. Who may read or write them is decided by the caller (REST)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Comment, User, utcnow


def shown_to_everyone(comment: Comment, author: User) -> bool:
    """Whether every reader of the document sees the comment: neither it nor its author is
    hidden by a moderator. Otherwise only its author and admins do (:func:`visible_to`)."""
    return comment.hidden_at is None and author.hidden_at is None


def visible_to(comment: Comment, author: User, viewer_id: uuid.UUID | None, *, viewer_is_admin: bool) -> bool:
    """The moderation rule of comments, for a reader of their document (the SQL twin is in
    :func:`list_comments`): hidden comments, and comments of hidden accounts, are seen only
    by their author and by admins."""
    return viewer_is_admin or shown_to_everyone(comment, author) or comment.author_id == viewer_id


async def create_comment(
    session: AsyncSession,
    *,
    resource_type: str,
    resource_id: uuid.UUID,
    author_id: uuid.UUID,
    body: str,
    anchor: dict[str, Any] | None,
) -> Comment:
    comment = Comment(
        resource_type=resource_type,
        resource_id=resource_id,
        author_id=author_id,
        body=body,
        anchor=anchor,
        created_at=utcnow(),
    )
    session.add(comment)
    await session.flush()
    return comment


async def get_comment(session: AsyncSession, comment_id: uuid.UUID) -> tuple[Comment, User] | None:
    row = (
        await session.execute(
            select(Comment, User).join(User, User.id == Comment.author_id).where(Comment.id == comment_id)
        )
    ).one_or_none()
    return (row[0], row[1]) if row is not None else None


async def list_comments(
    session: AsyncSession,
    *,
    resource_type: str,
    resource_id: uuid.UUID,
    viewer_id: uuid.UUID | None,
    viewer_is_admin: bool,
    offset: int,
    limit: int,
) -> tuple[list[tuple[Comment, User]], int]:
    """A page of a document's comments, oldest first, and their total.

    Hidden comments, and comments of hidden accounts, are left out except for their author
    and for admins (the rule of :func:`visible_to`, as SQL).
    """
    where: list[Any] = [Comment.resource_id == resource_id, Comment.resource_type == resource_type]
    if not viewer_is_admin:
        visible = (Comment.hidden_at.is_(None)) & (User.hidden_at.is_(None))
        where.append(or_(visible, Comment.author_id == viewer_id) if viewer_id is not None else visible)
    base = select(Comment, User).join(User, User.id == Comment.author_id).where(*where)
    rows = (
        await session.execute(base.order_by(Comment.created_at, Comment.id).offset(offset).limit(limit))
    ).all()
    total = await session.scalar(
        select(func.count()).select_from(Comment).join(User, User.id == Comment.author_id).where(*where)
    )
    return [(c, u) for c, u in rows], int(total or 0)


async def edit_comment(session: AsyncSession, comment: Comment, body: str) -> Comment:
    comment.body = body
    comment.edited_at = utcnow()
    await session.flush()
    return comment


async def delete_comment(session: AsyncSession, comment: Comment) -> None:
    await session.delete(comment)
    await session.flush()


async def delete_document_comments(
    session: AsyncSession, *, resource_type: str, resource_id: uuid.UUID
) -> None:
    """Delete every comment of a loop or song (call it when the document is deleted)."""
    await session.execute(
        delete(Comment).where(Comment.resource_type == resource_type, Comment.resource_id == resource_id)
    )
