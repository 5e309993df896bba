"""``GET /api/explore``: public loops and songs, searched by name, sorted, keyset-paginated."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime

import pydantic_core
from aiohttp import web
from pydantic.alias_generators import to_camel

from rest.community_schemas import ExploreQuery
from rest.context import context, read_query
from rest.errors import BadRequest
from rest.profiles import public_item
from rest.responses import json_response
from storage import explore
from storage.content_budget import read_contents
from storage.kinds import RESOURCE_MODELS


def encode_cursor(kind: str, sort: str, keyset: explore.Keyset) -> str:
    value = keyset.value.isoformat() if isinstance(keyset.value, datetime) else keyset.value
    raw = json.dumps([kind, sort, value, str(keyset.id)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, *, kind: str, sort: str) -> explore.Keyset:
    """The keyset a cursor carries; BadRequest (``validation_error``, field ``cursor``) if it
    is junk, from another listing, or tampered with: a value outside what the sort column can
    hold, a time out of range once moved to UTC, an id that is not a UUID string."""
    bad = BadRequest(
        "invalid cursor: pass the nextCursor of the previous page", details=[{"field": "cursor"}]
    )
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):  # not base64, not UTF-8, not JSON, too many digits
        raise bad from None
    if not (isinstance(decoded, list) and len(decoded) == 4):
        raise bad
    cursor_kind, cursor_sort, value, last_id = decoded
    if (cursor_kind, cursor_sort) != (kind, sort):
        raise BadRequest("this cursor belongs to another type or sort", details=[{"field": "cursor"}])
    if not isinstance(last_id, str):
        raise bad
    try:
        keyset_id = uuid.UUID(last_id)
    except ValueError:
        raise bad from None
    keyset_value = explore.keyset_value(sort, value)
    if keyset_value is None:
        raise bad
    return explore.Keyset(keyset_value, keyset_id)


async def explore_public(request: web.Request) -> web.Response:
    ctx = context(request)
    query = read_query(request, ExploreQuery)
    model = RESOURCE_MODELS[query.type]
    if not explore.sortable(model, query.sort):
        raise BadRequest(f"{query.type}s cannot be sorted by {query.sort}", details=[{"field": "sort"}])
    after = decode_cursor(query.cursor, kind=query.type, sort=query.sort) if query.cursor else None
    if after is not None and query.page != 1:
        raise BadRequest("give either page or cursor, not both", details=[{"field": "page"}])
    with_content = query.include == "content"
    async with ctx.db.session() as session:
        page = await explore.public_documents(
            session,
            model,
            q=query.q,
            sort=query.sort,
            after=after,
            offset=(query.page - 1) * query.limit,
            limit=query.limit,
            include_content=with_content,
        )
    next_cursor = (
        encode_cursor(query.type, query.sort, page.last) if page.has_more and page.last is not None else None
    )
    items = [public_item(row, owner).model_dump(mode="json", by_alias=True) for row, owner in page.rows]
    if page.entries is not None:
        contents = await read_contents(
            ctx.db,
            model,
            [row.id for row, _ in page.rows],
            page.entries,
            budget=ctx.settings.list_content_budget_bytes,
        )
        for item, (row, _) in zip(items, page.rows, strict=True):
            content = contents.get(row.id)
            if content is None:
                item["contentOmitted"] = True
            else:
                item.update((to_camel(column), value) for column, value in content.items())
    # Built as JSON directly: the content is the database's own, and validating thousands of
    # steps again would cost more than the rest of the request.
    body = {"items": items, "total": page.total, "page": query.page, "hasMore": page.has_more}
    return json_response(pydantic_core.to_json({**body, "nextCursor": next_cursor}))
