"""Loops and songs over REST. Both kinds share one set of handlers, described by a kind."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from rest.context import (
    context,
    json_model,
    optional_caller,
    path_uuid,
    read_json,
    read_query,
    require_caller,
)
from rest.schemas import (
    ListQuery,
    LoopCreate,
    LoopList,
    LoopPublic,
    LoopSummary,
    LoopUpdate,
    SongCreate,
    SongList,
    SongPublic,
    SongSummary,
    SongUpdate,
    Success,
    total_bars,
)
from settings import Settings
from storage import library
from storage.access import Role, role_for
from storage.errors import Forbidden, NotFound
from storage.models import Loop, Song

# Content fields are stored as the camelCase JSON clients see.
_CONTENT_FIELDS = {"chord_progression", "icon_sequence", "timeline"}


def _columns(payload: BaseModel, *, only_sent: bool) -> dict[str, Any]:
    """Validated input -> column values (all fields, or only those the client sent)."""
    values: dict[str, Any] = {}
    for field in payload.model_fields_set if only_sent else type(payload).model_fields:
        value = getattr(payload, field)
        if field in _CONTENT_FIELDS:
            value = [item.model_dump(by_alias=True, exclude_none=True) for item in value]
        values[field] = value
    if "timeline" in values:
        values["total_bars"] = total_bars(values["timeline"])
    return values


@dataclass(frozen=True)
class DocumentKind:
    name: str
    plural: str
    model: type[Loop] | type[Song]
    create: type[BaseModel]
    update: type[BaseModel]
    public: type[BaseModel]
    summary: type[BaseModel]
    listing: type[BaseModel]
    quota: Callable[[Settings], int]


LOOPS = DocumentKind(
    "loop",
    "loops",
    Loop,
    LoopCreate,
    LoopUpdate,
    LoopPublic,
    LoopSummary,
    LoopList,
    lambda s: s.max_loops_per_user,
)
SONGS = DocumentKind(
    "song",
    "songs",
    Song,
    SongCreate,
    SongUpdate,
    SongPublic,
    SongSummary,
    SongList,
    lambda s: s.max_songs_per_user,
)


class DocumentHandlers:
    """list / create / get / update / delete for one kind of document."""

    def __init__(self, kind: DocumentKind) -> None:
        self.kind = kind

    def _not_found(self) -> NotFound:
        return NotFound(f"{self.kind.name} not found")

    async def list(self, request: web.Request) -> web.Response:
        ctx = context(request)
        caller = await require_caller(request)
        query = read_query(request, ListQuery)
        with_content = query.include == "content"
        async with ctx.db.session() as session:
            rows, total = await library.list_documents(
                session,
                self.kind.model,
                user_id=caller.user_id,
                is_public=query.public,
                offset=(query.page - 1) * query.limit,
                limit=query.limit,
                include_content=with_content,
            )
        item = self.kind.public if with_content else self.kind.summary
        listing = self.kind.listing.model_validate(
            {
                self.kind.plural: [item.model_validate(row) for row in rows],
                "total": total,
                "page": query.page,
                "hasMore": query.page * query.limit < total,
            }
        )
        return json_model(listing)

    async def create(self, request: web.Request) -> web.Response:
        ctx = context(request)
        caller = await require_caller(request)
        payload = await read_json(request, self.kind.create)
        async with ctx.db.write_session() as session:
            document = await library.create_document(
                session,
                self.kind.model,
                user_id=caller.user_id,
                values=_columns(payload, only_sent=False),
                quota=self.kind.quota(ctx.settings),
            )
        return json_model(self.kind.public.model_validate(document), status=201)

    async def get(self, request: web.Request) -> web.Response:
        ctx = context(request)
        document_id = path_uuid(request)
        caller = await optional_caller(request)
        async with ctx.db.session() as session:
            document = await library.get_document(session, self.kind.model, document_id)
        if document is None or role_for(document, caller and caller.user_id) is None:
            raise self._not_found()
        return json_model(self.kind.public.model_validate(document))

    async def _owned(self, request: web.Request, session: Any) -> Loop | Song:
        document_id = path_uuid(request)
        caller = await require_caller(request)
        document = await library.get_document(session, self.kind.model, document_id)
        role = document and role_for(document, caller.user_id)
        if document is None or role is None:
            raise self._not_found()
        if role is not Role.OWNER:
            raise Forbidden(f"only the owner may change or delete this {self.kind.name}")
        return document

    async def update(self, request: web.Request) -> web.Response:
        ctx = context(request)
        path_uuid(request)
        await require_caller(request)
        payload = await read_json(request, self.kind.update)
        async with ctx.db.write_session() as session:
            document = await self._owned(request, session)
            await library.update_document(session, document, _columns(payload, only_sent=True))
        return json_model(self.kind.public.model_validate(document))

    async def delete(self, request: web.Request) -> web.Response:
        ctx = context(request)
        path_uuid(request)
        await require_caller(request)
        async with ctx.db.write_session() as session:
            document = await self._owned(request, session)
            await library.delete_document(session, document)
        return json_model(Success())
