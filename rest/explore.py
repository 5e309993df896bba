"""``GET /api/explore``: public loops and songs, searched by name, sorted, keyset-paginated."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime

from aiohttp import web

from rest.community_schemas import ExploreQuery, ExploreResponse
from rest.context import context, json_model, read_query
from rest.errors import BadRequest
from rest.profiles import public_item
from storage import explore
from storage.models import Loop, Song

MODELS: dict[str, type[Loop] | type[Song]] = {"loop": Loop, "song": Song}


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
    model = MODELS[query.type]
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
    response = ExploreResponse.model_validate(
        {
            "items": [public_item(row, owner, with_content=with_content) for row, owner in page.rows],
            "total": page.total,
            "page": query.page,
            "has_more": page.has_more,
            "next_cursor": next_cursor,
        }
    )
    return json_model(response)
