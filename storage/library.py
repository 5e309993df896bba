"""Loops and songs: the documents a user owns. One set of functions serves both tables."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from storage.comments import delete_document_comments
from storage.errors import QuotaExceeded, Unauthorized
from storage.models import Loop, SharedLink, Song, User, utcnow

Document = TypeVar("Document", Loop, Song)

# Heavy JSON columns that list views leave out unless asked for.
CONTENT_COLUMNS: dict[type[Loop] | type[Song], tuple[str, ...]] = {
    Loop: ("chord_progression", "icon_sequence"),
    Song: ("timeline",),
}
RESOURCE_TYPE: dict[type[Loop] | type[Song], str] = {Loop: "loop", Song: "song"}


async def create_document(
    session: AsyncSession,
    model: type[Document],
    *,
    user_id: uuid.UUID,
    values: dict[str, Any],
    quota: int,
) -> Document:
    """Insert a loop or song for ``user_id`` unless that user is at ``quota``."""
    # Lock the owner's row so concurrent creates cannot both pass the count (Postgres);
    # SQLite write sessions are already serialized by BEGIN IMMEDIATE.
    owner = (
        await session.execute(select(User.id).where(User.id == user_id).with_for_update())
    ).scalar_one_or_none()
    if owner is None:
        raise Unauthorized("this account no longer exists")
    count = await session.scalar(select(func.count()).select_from(model).where(model.user_id == user_id))
    if (count or 0) >= quota:
        kind = RESOURCE_TYPE[model]
        raise QuotaExceeded(f"{kind} quota reached: at most {quota} {kind}s per user")
    now = utcnow()
    document = model(user_id=user_id, created_at=now, updated_at=now, **values)
    session.add(document)
    await session.flush()
    return document


async def get_document(
    session: AsyncSession, model: type[Document], document_id: uuid.UUID
) -> Document | None:
    return await session.get(model, document_id)


async def list_documents(
    session: AsyncSession,
    model: type[Document],
    *,
    user_id: uuid.UUID,
    is_public: bool | None,
    offset: int,
    limit: int,
    include_content: bool,
) -> tuple[list[Document], int]:
    """A page of the user's loops or songs, most recently updated first, and the total."""
    where = [model.user_id == user_id]
    if is_public is not None:
        where.append(model.is_public == is_public)
    query = (
        select(model).where(*where).order_by(model.updated_at.desc(), model.id).offset(offset).limit(limit)
    )
    if not include_content:
        query = query.options(*(defer(getattr(model, c)) for c in CONTENT_COLUMNS[model]))
    rows = list((await session.execute(query)).scalars())
    total = await session.scalar(select(func.count()).select_from(model).where(*where))
    return rows, int(total or 0)


async def update_document(session: AsyncSession, document: Document, values: dict[str, Any]) -> Document:
    for key, value in values.items():
        setattr(document, key, value)
    document.updated_at = utcnow()
    await session.flush()
    return document


async def delete_document(session: AsyncSession, document: Loop | Song) -> None:
    # Share links point at either table, so the database cannot cascade them.
    await session.execute(
        delete(SharedLink).where(
            SharedLink.resource_type == RESOURCE_TYPE[type(document)],
            SharedLink.resource_id == document.id,
        )
    )
    await delete_document_comments(
        session, resource_type=RESOURCE_TYPE[type(document)], resource_id=document.id
    )
    await session.delete(document)
    await session.flush()
