"""Public listings: explore, search and profiles. Only public content that is not hidden.

Name search is a case-insensitive substring match (so also a prefix match): ``ILIKE``
with the user's text escaped. On Postgres the ``pg_trgm`` GIN index on ``name`` serves it
at any table size; on SQLite it is a scan of the public rows (fine for the embedded,
single-machine mode; the benchmark reports both).

Pagination is a keyset: every sort is total and stable, ``(sort column, id)`` descending,
and ``after`` continues strictly after the last item of the previous page. Items created
meanwhile are never repeated or skipped: a new item sorts before the cursor (``recent``),
or with zero views/forks after everything that had views, where the keyset reaches it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, func, literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from storage.content_budget import content_entries
from storage.database import AnySelect
from storage.library import CONTENT_COLUMNS, NEVER_LISTED
from storage.models import Loop, Song, User

# sort name -> column (loops and songs both have every one).
SORT_COLUMNS: dict[str, str] = {"recent": "created_at", "views": "view_count", "forks": "fork_count"}
# The counters are 32-bit INTEGER columns (Postgres refuses a larger parameter for them).
MAX_COUNT = 2**31 - 1


@dataclass(frozen=True)
class Keyset:
    """Where a page ended: the last item's sort value and id."""

    value: int | datetime
    id: uuid.UUID


def keyset_value(sort: str, value: Any) -> int | datetime | None:
    """A keyset value read back from a client (a cursor), as the sort column takes it, or
    None if that column could never hold it: a count outside ``0..MAX_COUNT``, anything but
    an ISO 8601 time for ``recent``, a time that leaves the representable range once moved
    to UTC (``9999-12-31T23:59:59-14:00``). Times come back aware, in UTC."""
    if sort != "recent":
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT:
            return value
        return None
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
        # SQLite hands back naive times; every stored time is UTC.
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def sortable(model: type[Loop] | type[Song], sort: str) -> bool:
    return hasattr(model, SORT_COLUMNS[sort])


def escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def name_matches(model: type[Loop] | type[Song], q: str) -> Any:
    return model.name.ilike(f"%{escape_like(q)}%", escape="\\")


def _public_filter(model: type[Loop] | type[Song], *, q: str | None, owner_id: uuid.UUID | None) -> list[Any]:
    # Hidden owners as an anti-join on their (few) ids: the count then reads the documents
    # table alone, three times cheaper than joining every row to its owner.
    hidden_owners = select(User.id).where(User.hidden_at.is_not(None))
    where: list[Any] = [
        model.is_public.is_(True),
        model.hidden_at.is_(None),
        model.user_id.not_in(hidden_owners),
    ]
    if owner_id is not None:
        where.append(model.user_id == owner_id)
    if q:
        where.append(name_matches(model, q))
    return where


def search_query(model: type[Loop] | type[Song], q: str, *, limit: int = 20) -> AnySelect:
    """The first page of a name search, newest first (what explore runs; for EXPLAIN)."""
    return (
        select(model.id, User.username)
        .join(User, User.id == model.user_id)
        .where(*_public_filter(model, q=q, owner_id=None))
        .order_by(model.created_at.desc(), model.id.desc())
        .limit(limit + 1)
    )


@dataclass(frozen=True)
class PublicPage:
    """A page of documents (their content columns not loaded) with their owners, the total,
    whether more follow, and the keyset of the page's last item (None on an empty page).
    With content asked for, ``entries`` has the number of content entries of each document
    (for ``storage.content_budget.read_contents``)."""

    rows: list[tuple[Loop | Song, User]]
    total: int
    has_more: bool
    last: Keyset | None
    entries: list[int] | None = None


async def public_documents(
    session: AsyncSession,
    model: type[Loop] | type[Song],
    *,
    q: str | None = None,
    sort: str = "recent",
    owner_id: uuid.UUID | None = None,
    after: Keyset | None = None,
    offset: int = 0,
    limit: int = 20,
    include_content: bool = False,
) -> PublicPage:
    """Public, visible documents in ``sort`` order: after the keyset ``after`` if given,
    else from ``offset``."""
    column = getattr(model, SORT_COLUMNS[sort])
    where = _public_filter(model, q=q, owner_id=owner_id)
    sizes = [content_entries(model)] if include_content else []
    query: Select[Any] = select(model, User).add_columns(*sizes)
    query = query.join(User, User.id == model.user_id).where(*where)
    if after is not None:
        query = query.where(
            tuple_(column, model.id)
            < tuple_(literal(after.value, type_=column.type), literal(after.id, type_=model.id.type))
        )
    else:
        query = query.offset(offset)
    query = query.order_by(column.desc(), model.id.desc()).limit(limit + 1)
    # Never the Yjs state (up to RT_MAX_DOCUMENT_BYTES a row); the content is read apart,
    # within a budget (storage.content_budget).
    query = query.options(*(defer(getattr(model, c)) for c in (*NEVER_LISTED, *CONTENT_COLUMNS[model])))
    found = (await session.execute(query)).all()
    has_more = len(found) > limit
    found = found[:limit]
    rows = [(row[0], row[1]) for row in found]
    total = await session.scalar(select(func.count()).select_from(model).where(*where))
    last = Keyset(getattr(rows[-1][0], SORT_COLUMNS[sort]), rows[-1][0].id) if rows else None
    entries = [int(row[2]) for row in found] if include_content else None
    return PublicPage(rows=rows, total=int(total or 0), has_more=has_more, last=last, entries=entries)
