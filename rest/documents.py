"""Loops and songs over REST. Both kinds share one set of handlers, described by a kind.

Content (name, tempo, chords, steps, timeline...) lives in the live CRDT document: writes go
through the document service as CRDT updates that collaborators see at once, and reads
prefer the live document. Ownership, visibility and counters stay in SQL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pycrdt import Doc
from pydantic import BaseModel
from pydantic.alias_generators import to_camel

from realtime import docschema
from realtime.documents import content_columns, initial_state
from realtime.read_cache import CachedDocument
from rest.context import (
    context,
    json_model,
    optional_caller,
    path_uuid,
    read_json,
    read_query,
    require_caller,
)
from rest.errors import BadRequest
from rest.schemas import (
    ListQuery,
    LoopCreate,
    LoopList,
    LoopPublic,
    LoopSummary,
    LoopUpdate,
    Presence,
    SongCreate,
    SongList,
    SongPublic,
    SongSummary,
    SongUpdate,
    Success,
)
from settings import Settings
from storage import documents as stored
from storage import library, moderation
from storage.access import Role, is_visible, role_for, role_from
from storage.errors import Forbidden, NotFound
from storage.models import Loop, Song


@dataclass(frozen=True)
class DocumentKind:
    name: str
    plural: str
    doc_kind: docschema.DocKind
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
    docschema.DocKind.LOOP,
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
    docschema.DocKind.SONG,
    Song,
    SongCreate,
    SongUpdate,
    SongPublic,
    SongSummary,
    SongList,
    lambda s: s.max_songs_per_user,
)

# Fields kept in SQL only; every other input field is document content.
SQL_FIELDS = {"is_public"}


def _content(payload: BaseModel, *, only_sent: bool) -> dict[str, Any]:
    """Validated input -> document content, camelCase (all fields, or only those sent)."""
    content: dict[str, Any] = {}
    for field in payload.model_fields_set if only_sent else type(payload).model_fields:
        if field in SQL_FIELDS:
            continue
        value = getattr(payload, field)
        if isinstance(value, list):
            value = [item.model_dump(by_alias=True, exclude_none=True) for item in value]
        content[to_camel(field)] = value
    return content


def creation_content(payload: BaseModel) -> dict[str, Any]:
    """A validated create body (``LoopCreate`` / ``SongCreate``) -> the new document's content."""
    return _content(payload, only_sent=False)


class DocumentHandlers:
    """list / create / get / update / delete / presence for one kind of document."""

    def __init__(self, kind: DocumentKind) -> None:
        self.kind = kind

    def _not_found(self) -> NotFound:
        return NotFound(f"{self.kind.name} not found")

    def _public(self, row: Loop | Song, content: dict[str, Any] | None) -> web.Response:
        data = self.kind.public.model_validate(row).model_dump(mode="json", by_alias=True)
        if content is not None:
            data.update(content)
        return web.json_response(data)

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
        items = []
        for row in rows:
            data = item.model_validate(row).model_dump(mode="json", by_alias=True)
            live = ctx.documents.loaded(self.kind.doc_kind, row.id)
            if live is not None:  # a document being edited right now is newer than its row
                data.update({k: v for k, v in live.content().items() if k in data})
            items.append(data)
        return web.json_response(
            {
                self.kind.plural: items,
                "total": total,
                "page": query.page,
                "hasMore": query.page * query.limit < total,
            }
        )

    async def create(self, request: web.Request) -> web.Response:
        ctx = context(request)
        caller = await require_caller(request)
        payload = await read_json(request, self.kind.create)
        try:
            state = initial_state(self.kind.doc_kind, creation_content(payload))
        except ValueError as exc:
            raise BadRequest(f"invalid {self.kind.name}: {exc}") from None
        doc = Doc()
        doc.apply_update(state)
        values = content_columns(docschema.doc_to_content(self.kind.doc_kind, doc))
        values.update(is_public=payload.is_public, doc_state=state)
        async with ctx.db.write_session() as session:
            row = await library.create_document(
                session,
                self.kind.model,
                user_id=caller.user_id,
                values=values,
                quota=self.kind.quota(ctx.settings),
            )
        return web.json_response(
            self.kind.public.model_validate(row).model_dump(mode="json", by_alias=True), status=201
        )

    async def _readable(self, request: web.Request) -> tuple[Loop | Song, Role, bool]:
        """The document, the caller's role, and whether the update log has unfolded entries."""
        ctx = context(request)
        document_id = path_uuid(request)
        caller = await optional_caller(request)
        async with ctx.db.session() as session:
            row = await library.get_document(session, self.kind.model, document_id)
            role = role_for(row, caller and caller.user_id) if row is not None else None
            if row is not None and role is None and caller is not None and row.hidden_at is not None:
                if await moderation.is_admin(session, caller.user_id, ctx.settings.admin_user_ids):
                    role = Role.VIEWER  # moderators review hidden content
            if row is None or role is None:
                raise self._not_found()
            stale = ctx.documents.loaded(self.kind.doc_kind, document_id) is None and (
                await stored.has_unsnapshotted_updates(
                    session, resource_type=self.kind.name, resource_id=document_id
                )
            )
        return row, role, stale

    async def get(self, request: web.Request) -> web.Response:
        documents = context(request).documents
        document_id = path_uuid(request)
        cached = documents.read_cache.get(self.kind.name, document_id)
        if cached is not None and documents.loaded(self.kind.doc_kind, document_id) is None:
            caller = await optional_caller(request)
            role = role_from(
                owner_id=cached.owner_id, is_public=cached.is_public, user_id=caller and caller.user_id
            )
            if role is not None:
                return web.Response(body=cached.body, content_type="application/json")
            # else: maybe an admin reading hidden content; the full check below decides.
        read_at = documents.read_cache.generation()
        row, _role, stale = await self._readable(request)
        content = await documents.read_content(self.kind.doc_kind, row.id, stale=stale)
        response = self._public(row, content)
        if content is None:  # nobody is editing it: the row is the whole truth, keep it
            documents.read_cache.put(
                self.kind.name,
                row.id,
                CachedDocument(
                    row.user_id,
                    row.is_public and is_visible(row, None),
                    bytes(response.body),  # type: ignore[arg-type]
                ),
                read_at=read_at,
            )
        return response

    async def presence(self, request: web.Request) -> web.Response:
        row, _role, _stale = await self._readable(request)
        members = context(request).documents.presence(self.kind.doc_kind, row.id)
        return json_model(Presence.model_validate({"members": members}))

    async def _owned(self, request: web.Request) -> Loop | Song:
        ctx = context(request)
        document_id = path_uuid(request)
        caller = await require_caller(request)
        async with ctx.db.session() as session:
            row = await library.get_document(session, self.kind.model, document_id)
        role = role_for(row, caller.user_id) if row is not None else None
        if row is None or role is None:
            raise self._not_found()
        if role is not Role.OWNER:
            raise Forbidden(f"only the owner may change or delete this {self.kind.name}")
        return row

    async def update(self, request: web.Request) -> web.Response:
        ctx = context(request)
        path_uuid(request)  # a bad id or a missing token is reported before the body is read
        await require_caller(request)
        payload = await read_json(request, self.kind.update)
        row = await self._owned(request)
        content = _content(payload, only_sent=True)
        live: dict[str, Any] | None = None
        if content:
            try:
                live = await ctx.documents.write_content(self.kind.doc_kind, row.id, content, set(content))
            except ValueError as exc:
                raise BadRequest(f"invalid {self.kind.name}: {exc}") from None
        is_public = payload.model_dump(include=SQL_FIELDS, exclude_unset=True)
        async with ctx.db.write_session() as session:
            fresh = await library.get_document(session, self.kind.model, row.id)
            if fresh is None:
                raise self._not_found()
            if is_public:
                await library.update_document(session, fresh, is_public)
        ctx.documents.read_cache.invalidate(self.kind.name, row.id)
        if is_public and is_public["is_public"] != row.is_public:
            await ctx.documents.access_changed(self.kind.doc_kind, row.id)
        return self._public(fresh, live)

    async def delete(self, request: web.Request) -> web.Response:
        ctx = context(request)
        row = await self._owned(request)
        async with ctx.db.write_session() as session:
            fresh = await library.get_document(session, self.kind.model, row.id)
            if fresh is None:
                raise self._not_found()
            await library.delete_document(session, fresh)
            await stored.delete_document_log(session, resource_type=self.kind.name, resource_id=row.id)
        await ctx.documents.document_deleted(self.kind.doc_kind, row.id)
        return json_model(Success())
