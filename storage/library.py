"""Loops and songs: the documents a user owns. One set of functions serves both tables."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import ColumnElement, DateTime, String, Uuid, bindparam, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import defer
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import KeyedColumnElement
from sqlalchemy.sql.functions import FunctionElement

from storage.comments import delete_document_comments
from storage.content_budget import content_entries, read_contents
from storage.database import AnySelect, Database
from storage.errors import QuotaExceeded, Unauthorized
from storage.history import delete_history
from storage.kinds import CONTENT_COLUMNS, resource_type_of
from storage.models import Collaborator, DocumentView, Loop, SharedLink, Song, User, utcnow

Document = TypeVar("Document", bound=Loop | Song)

# Never in a listing: the Yjs state (the heaviest column) and its log bookkeeping.
NEVER_LISTED = frozenset({"doc_state", "doc_log_position"})


@dataclass(frozen=True)
class Page:
    """One page of a listing: plain column values (no ORM objects), in ``columns`` order.
    With content asked for, ``contents`` has the content columns of the documents that fit
    the page's budget (``storage.content_budget``), by id."""

    columns: tuple[str, ...]
    rows: Sequence[Sequence[Any]]
    total: int
    has_more: bool
    contents: dict[uuid.UUID, dict[str, Any]] | None = None


class uuid_text(FunctionElement[str]):
    """A UUID column as its canonical text (8-4-4-4-12), the form JSON carries: a listing then
    builds no UUID objects to turn back into text (on SQLite, a third of the read's CPU)."""

    type = String()
    inherit_cache = True


@compiles(uuid_text)
def _uuid_text(element: uuid_text, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS TEXT)"


@compiles(uuid_text, "sqlite")
def _uuid_text_sqlite(element: uuid_text, compiler: SQLCompiler, **kw: Any) -> str:
    hex_digits = compiler.process(element.clauses, **kw)  # SQLite holds 32 lowercase hex digits
    groups = ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))
    return " || '-' || ".join(f"substr({hex_digits}, {start}, {length})" for start, length in groups)


class utc_datetime(FunctionElement[datetime]):
    """A timestamp column read back as an aware UTC datetime on every backend: SQLite holds
    naive UTC text, so the offset is appended before the driver's value is parsed (cheaper
    than a ``replace(tzinfo=UTC)`` per value afterwards)."""

    type = DateTime(timezone=True)
    inherit_cache = True


@compiles(utc_datetime)
def _utc_datetime(element: utc_datetime, compiler: SQLCompiler, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(utc_datetime, "sqlite")
def _utc_datetime_sqlite(element: utc_datetime, compiler: SQLCompiler, **kw: Any) -> str:
    return f"({compiler.process(element.clauses, **kw)} || '+00:00')"


def _listed(column: KeyedColumnElement[Any]) -> ColumnElement[Any]:
    if isinstance(column.type, Uuid):
        return uuid_text(column).label(column.key)
    if isinstance(column.type, DateTime):
        return utc_datetime(column).label(column.key)
    return column


def listed_columns(
    model: type[Loop] | type[Song], *, include_content: bool = False
) -> list[ColumnElement[Any]]:
    """A listing's columns, named as in the table, with values as JSON carries them: UUIDs as
    text (``uuid_text``), timestamps aware (``utc_datetime``). Listings leave the content
    columns out (``include_content=False``) and read them within a budget
    (``storage.content_budget``)."""
    skip = NEVER_LISTED if include_content else NEVER_LISTED | set(CONTENT_COLUMNS[model])
    return [_listed(column) for column in model.__table__.columns if column.name not in skip]


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
        # mypy does not see type[Document] (bound to Loop | Song) as type[Loop] | type[Song].
        kind = resource_type_of(cast("type[Loop] | type[Song]", model))
        raise QuotaExceeded(f"{kind} quota reached: at most {quota} {kind}s per user")
    now = utcnow()
    document = model(user_id=user_id, created_at=now, updated_at=now, **values)
    session.add(document)
    await session.flush()
    return document


async def get_document(
    session: AsyncSession, model: type[Document], document_id: uuid.UUID, *, with_state: bool = True
) -> Document | None:
    """The row; ``with_state=False``: without its Yjs state (up to RT_MAX_DOCUMENT_BYTES), for
    a caller that only checks who may do what (loading it is half of such a read's time)."""
    options = [] if with_state else [defer(model.doc_state)]
    return await session.get(model, document_id, options=options)


def _page_filter(
    model: type[Loop] | type[Song], *, by_visibility: bool, scope: str
) -> list[ColumnElement[bool]]:
    table = model.__table__
    where: list[ColumnElement[bool]]
    if scope == "collaborating":
        shared_with = select(Collaborator.resource_id).where(Collaborator.user_id == bindparam("user_id"))
        where = [table.c.id.in_(shared_with)]
    else:
        where = [table.c.user_id == bindparam("user_id")]
    if by_visibility:
        where.append(table.c.is_public == bindparam("is_public"))
    return where


@functools.cache
def _page_query(
    model: type[Loop] | type[Song], *, include_content: bool, by_visibility: bool, scope: str
) -> AnySelect:
    """The listing statement, built once per shape (building a select costs more than running it)."""
    table = model.__table__
    where = _page_filter(model, by_visibility=by_visibility, scope=scope)
    # The total as a scalar subquery rather than ``count(*) OVER ()``: a window makes SQLite
    # read and sort every matching row before the LIMIT (twice the CPU of the page alone);
    # the subquery counts from the index.
    total = _count_query(model, by_visibility=by_visibility, scope=scope).scalar_subquery()
    sizes = [content_entries(model)] if include_content else []
    return (
        select(*listed_columns(model), *sizes, total.label("total"))
        .where(*where)
        .order_by(table.c.updated_at.desc(), table.c.id)
        .offset(bindparam("offset"))
        .limit(bindparam("limit"))
    )


@functools.cache
def _count_query(model: type[Loop] | type[Song], *, by_visibility: bool, scope: str) -> AnySelect:
    where = _page_filter(model, by_visibility=by_visibility, scope=scope)
    return select(func.count()).select_from(model.__table__).where(*where)


@functools.cache
def _column_names(query: AnySelect) -> tuple[str, ...]:
    return tuple(str(column.key) for column in query.selected_columns)


async def list_documents(
    db: Database,
    model: type[Loop] | type[Song],
    *,
    user_id: uuid.UUID,
    is_public: bool | None,
    offset: int,
    limit: int,
    content_budget: int | None,
    scope: str = "mine",
) -> Page:
    """A page of the user's loops or songs (``scope="collaborating"``: those the user is a
    collaborator of), most recently updated first, and the total.

    One statement through ``Database.read`` (no ORM, no transaction): the summary columns,
    ``limit + 1`` rows to learn whether there is more, and the total counted over the same
    filter. With a ``content_budget`` (bytes), the content of the page's documents that fit
    it is read too (``storage.content_budget``).
    """
    shape = {"by_visibility": is_public is not None, "scope": scope}
    query = _page_query(model, include_content=content_budget is not None, **shape)
    values: dict[str, Any] = {"user_id": user_id, "offset": offset, "limit": limit + 1}
    if is_public is not None:
        values["is_public"] = is_public
    rows = await db.read(query, values)
    if rows:
        total = int(rows[0][-1])
    else:  # past the last page there is no row to carry the total
        (count,) = await db.read(_count_query(model, **shape), values)
        total = int(count[0])
    has_more, rows = len(rows) > limit, rows[:limit]
    columns = _column_names(query)
    contents = None
    if content_budget is not None:
        at, sizes = columns.index("id"), columns.index("content_entries")
        ids = [uuid.UUID(row[at]) for row in rows]
        contents = await read_contents(db, model, ids, [row[sizes] for row in rows], budget=content_budget)
    return Page(columns=columns, rows=rows, total=total, has_more=has_more, contents=contents)


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
            SharedLink.resource_type == resource_type_of(document),
            SharedLink.resource_id == document.id,
        )
    )
    await session.execute(delete(Collaborator).where(Collaborator.resource_id == document.id))
    await session.execute(delete(DocumentView).where(DocumentView.resource_id == document.id))
    await delete_document_comments(session, resource_type=resource_type_of(document), resource_id=document.id)
    await delete_history(session, document.id)
    await session.delete(document)
    await session.flush()
