"""Loops and songs over REST. Both kinds share one set of handlers, described by a kind.

Content (name, tempo, chords, steps, timeline...) lives in the live CRDT document: writes go
through the document service as CRDT updates that collaborators see at once, and reads
prefer the live document. Ownership, visibility and counters stay in SQL.
"""

from __future__ import annotations

import builtins
import functools
import operator
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic_core
from aiohttp import web
from pycrdt import Doc
from pydantic import BaseModel
from pydantic.alias_generators import to_camel

from events import outbox
from events.outbox import document_ref
from music.columns import content_columns
from music.ids import parse_canonical_uuid
from music.kinds import DocKind
from music.positions import PositionOutOfRange
from music.reading import doc_to_content
from music.roles import Role
from music.writing import content_to_update
from realtime.errors import ErrorCode, RealtimeError
from realtime.read_cache import CachedDocument
from rest.client_address import request_ip, trusted_networks
from rest.context import (
    RestContext,
    context,
    json_model,
    optional_caller,
    path_uuid,
    read_json,
    read_query,
    require_caller,
)
from rest.errors import BadRequest
from rest.responses import json_response
from rest.samples import loop_samples
from rest.schemas import (
    ListQuery,
    LoopCreate,
    LoopDetail,
    LoopList,
    LoopPublic,
    LoopSummary,
    LoopUpdate,
    Moderated,
    Presence,
    SongCreate,
    SongDetail,
    SongList,
    SongPublic,
    SongQuery,
    SongSummary,
    SongUpdate,
    SongWritten,
    Success,
)
from settings import Settings
from storage import document_store as stored
from storage import library, moderation
from storage.access import is_visible, readable_loops, resolve_role, role_from
from storage.errors import Forbidden, NotFound, Unauthorized
from storage.kinds import document_model
from storage.models import Loop, Song
from storage.users import get_user
from storage.views import viewer_key


@dataclass(frozen=True)
class DocumentKind:
    """How REST serves one kind of document; its table comes from ``storage.kinds``."""

    plural: str
    doc_kind: DocKind
    create: type[BaseModel]
    update: type[BaseModel]
    public: type[BaseModel]
    summary: type[BaseModel]
    listing: type[BaseModel]
    quota: Callable[[Settings], int]
    detail: type[BaseModel] | None = None  # GET's response, when it says more than ``public``
    item_query: type[BaseModel] | None = None  # GET's query string, if it takes one
    written: type[BaseModel] | None = None  # POST's and PATCH's response, when it says more

    @property
    def name(self) -> str:
        return self.doc_kind.value

    @property
    def model(self) -> type[Loop] | type[Song]:
        return document_model(self.doc_kind.value)


LOOPS = DocumentKind(
    "loops",
    DocKind.LOOP,
    LoopCreate,
    LoopUpdate,
    LoopPublic,
    LoopSummary,
    LoopList,
    lambda s: s.max_loops_per_user,
    detail=LoopDetail,
)
SONGS = DocumentKind(
    "songs",
    DocKind.SONG,
    SongCreate,
    SongUpdate,
    SongPublic,
    SongSummary,
    SongList,
    lambda s: s.max_songs_per_user,
    detail=SongDetail,
    item_query=SongQuery,
    written=SongWritten,
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


def count_view(request: web.Request, kind: str, document_id: uuid.UUID, user_id: uuid.UUID | None) -> None:
    """Note a view of a document the caller does not own (batched; nothing waits for it).
    Without a token the viewer is its address (behind ``TRUSTED_PROXIES``, the client's)."""
    ctx = context(request)
    ip = request_ip(request, trusted_networks(ctx.settings.trusted_proxies)) if user_id is None else None
    ctx.views.record(kind, document_id, viewer_key(user_id=user_id, ip=ip))


@functools.cache
def _json_fields(model: type[BaseModel]) -> tuple[tuple[str, str], ...]:
    """(JSON key, column) for each field of an output model; its fields are named after columns."""
    return tuple(
        (field.alias or name, name) for name, field in model.model_fields.items() if not field.exclude
    )


@functools.cache
def _item_layout(
    model: type[BaseModel], columns: tuple[str, ...]
) -> tuple[tuple[str, ...], Callable[[Sequence[Any]], tuple[Any, ...]], int | None]:
    """How a listing row becomes an item of ``model``: its JSON keys, a getter of their values
    from the row and the position of ``hidden_at`` (if the model is ``Moderated``)."""
    position = {column: i for i, column in enumerate(columns)}
    fields = _json_fields(model)
    keys = tuple(key for key, _column in fields)
    pick = operator.itemgetter(*(position[column] for _key, column in fields))
    hidden_at = position["hidden_at"] if issubclass(model, Moderated) else None
    return keys, pick, hidden_at


def _listed_items(
    kind: DocumentKind, page: library.Page, live_content: Callable[[str], dict[str, Any] | None]
) -> list[dict[str, Any]]:
    """Rows -> JSON-ready dicts with the summary's keys, straight from the column values (ids
    come as text and timestamps aware: ``storage.library.listed_columns``), and the content
    read for the page (``page.contents``; a document past the page's budget is marked
    ``contentOmitted``). The content of a document being edited right now,
    ``live_content(id)``, is newer than its row."""
    keys, pick, hidden_at = _item_layout(kind.summary, page.columns)
    content_keys = {column: key for key, column in _json_fields(kind.public) if key not in keys}
    items = []
    for row in page.rows:
        item = dict(zip(keys, pick(row), strict=True))
        if hidden_at is not None:  # Moderated.hidden, computed as the model computes it
            item["hidden"] = row[hidden_at] is not None
        if page.contents is not None:
            content = page.contents.get(uuid.UUID(item["id"]))
            if content is None:
                item["contentOmitted"] = True
            else:
                item.update((content_keys[column], value) for column, value in content.items())
        live = live_content(item["id"])
        if live is not None:
            item.update({k: v for k, v in live.items() if k in item})
        items.append(item)
    return items


def creation_content(payload: BaseModel) -> dict[str, Any]:
    """A validated create body (``LoopCreate`` / ``SongCreate``) -> the new document's content."""
    return _content(payload, only_sent=False)


class DocumentHandlers:
    """list / create / get / update / delete / presence for one kind of document."""

    def __init__(self, kind: DocumentKind) -> None:
        self.kind = kind

    def _not_found(self) -> NotFound:
        return NotFound(f"{self.kind.name} not found")

    def _data(self, row: Loop | Song, content: dict[str, Any] | None) -> dict[str, Any]:
        data = self.kind.public.model_validate(row).model_dump(mode="json", by_alias=True)
        if content is not None:
            data.update(content)
        return data

    async def list(self, request: web.Request) -> web.Response:
        ctx = context(request)
        caller = await require_caller(request)
        query = read_query(request, ListQuery)
        page = await library.list_documents(
            ctx.db,
            self.kind.model,
            user_id=caller.user_id,
            is_public=query.public,
            offset=(query.page - 1) * query.limit,
            limit=query.limit,
            content_budget=ctx.settings.list_content_budget_bytes if query.include == "content" else None,
            scope=query.scope,
        )
        if page.total == 0:
            # Tokens are verified without a database round trip; a deleted account has no
            # rows left, so only an empty listing needs to ask whether the caller still exists.
            async with ctx.db.session() as session:
                if await get_user(session, caller.user_id) is None:
                    raise Unauthorized("this account no longer exists")

        def live_content(document_id: str) -> dict[str, Any] | None:
            if not ctx.documents.rooms:  # nothing is open here: no id to parse
                return None
            room = ctx.documents.loaded(self.kind.doc_kind, uuid.UUID(document_id))
            return None if room is None else room.content()

        items = _listed_items(self.kind, page, live_content)
        # Rows go straight from column values to JSON bytes, without model objects in between.
        body = {self.kind.plural: items, "total": page.total, "page": query.page, "hasMore": page.has_more}
        return json_response(pydantic_core.to_json(body))

    async def create(self, request: web.Request) -> web.Response:
        ctx = context(request)
        caller = await require_caller(request)
        payload = await read_json(request, self.kind.create)
        assert isinstance(payload, LoopCreate | SongCreate)  # what every kind's ``create`` is
        try:
            state = content_to_update(self.kind.doc_kind, creation_content(payload))
        except PositionOutOfRange as exc:
            raise RealtimeError(ErrorCode.POSITION_OUT_OF_RANGE, str(exc)) from None
        except ValueError as exc:
            raise BadRequest(f"invalid {self.kind.name}: {exc}") from None
        doc: Doc[Any] = Doc()
        doc.apply_update(state)
        values = content_columns(doc_to_content(self.kind.doc_kind, doc))
        values.update(is_public=payload.is_public, doc_state=state)
        async with ctx.db.write_session() as session:
            row = await library.create_document(
                session,
                self.kind.model,
                user_id=caller.user_id,
                values=values,
                quota=self.kind.quota(ctx.settings),
            )
            await outbox.record(
                session,
                f"{self.kind.name}.created",
                {self.kind.name: document_ref(row)},
                actor_id=caller.user_id,
                document=row,
            )
        data = self.kind.public.model_validate(row).model_dump(mode="json", by_alias=True)
        if isinstance(payload, SongCreate):
            data["warnings"] = await self._timeline_warnings(request, data["timeline"])
        return json_response(data, status=201)

    async def _readable(self, request: web.Request) -> tuple[Loop | Song, Role, bool]:
        """The document, the caller's role, and whether the update log has unfolded entries."""
        ctx = context(request)
        document_id = path_uuid(request)
        caller = await optional_caller(request)
        async with ctx.db.session() as session:
            row = await library.get_document(session, self.kind.model, document_id)
            role = (
                await resolve_role(session, row, user_id=caller.user_id if caller else None)
                if row is not None
                else None
            )
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
        query = read_query(request, self.kind.item_query) if self.kind.item_query is not None else None
        with_loops = isinstance(query, SongQuery) and query.include == "loops"
        cached = None if with_loops else documents.read_cache.get(self.kind.name, document_id)
        if cached is not None and documents.loaded(self.kind.doc_kind, document_id) is None:
            caller = await optional_caller(request)
            role = role_from(
                owner_id=cached.owner_id,
                is_public=cached.is_public,
                user_id=caller.user_id if caller else None,
            )
            if role is not None:  # else: maybe a collaborator, or an admin on hidden content
                if role is not Role.OWNER:
                    count_view(request, self.kind.name, document_id, caller.user_id if caller else None)
                return json_response(cached.body)
        read_at = documents.read_cache.generation()
        row, role, stale = await self._readable(request)
        if role is not Role.OWNER:
            caller = await optional_caller(request)
            count_view(request, self.kind.name, row.id, caller.user_id if caller else None)
        content = await documents.read_content(self.kind.doc_kind, row.id, stale=stale)
        data = self._data(row, content)
        cacheable = content is None  # nobody is editing it: the row is the whole truth, keep it
        if self.kind.doc_kind is DocKind.LOOP:
            assert isinstance(row, Loop)
            data["samples"] = await loop_samples(request, row, data)
            # Sample URLs may be signed for a limited time, and samples may be deleted.
            cacheable = cacheable and not data["samples"]
        else:
            data["loops"], data["missingLoopIds"] = None, None
            if with_loops:
                data["loops"], data["missingLoopIds"] = await self._timeline_loops(request, data["timeline"])
                cacheable = False  # the loops have their own lives
        response = json_response(data)
        if cacheable:
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

    async def _readable_loop_rows(self, request: web.Request, loop_ids: set[str]) -> Sequence[Loop]:
        ctx = context(request)
        caller = await optional_caller(request)
        ids = {parsed for value in loop_ids if (parsed := parse_canonical_uuid(value)) is not None}
        async with ctx.db.session() as session:
            return await readable_loops(session, ids=ids, user_id=caller.user_id if caller else None)

    async def _timeline_warnings(
        self, request: web.Request, timeline: Sequence[dict[str, Any]]
    ) -> builtins.list[dict[str, Any]]:
        """``unknown_loop`` for the blocks naming a loop the caller may not read, with the
        details ``POST /api/migrate`` gives for the blocks it leaves out. The song keeps them
        (the loop may be migrated or shared later)."""
        wanted = {str(block["loopId"]) for block in timeline}
        readable = {str(row.id) for row in await self._readable_loop_rows(request, wanted)}
        unknown = [
            {"blockId": block["id"], "loopId": block["loopId"], "reason": "loop not found"}
            for block in timeline
            if block["loopId"] not in readable
        ]
        if not unknown:
            return []
        message = (
            f"{len(unknown)} timeline block(s) name a loop that does not exist or that you may not read; "
            "create or migrate the loop first, then use its id"
        )
        return [{"code": "unknown_loop", "error": message, "details": unknown}]

    async def _timeline_loops(
        self, request: web.Request, timeline: Sequence[dict[str, Any]]
    ) -> tuple[Sequence[dict[str, Any]], Sequence[str]]:
        """The loops a song's timeline uses (readable ones, with live content) and the ids of
        the others, in timeline order."""
        documents = context(request).documents
        order = list(dict.fromkeys(str(block["loopId"]) for block in timeline))
        rows = {str(row.id): row for row in await self._readable_loop_rows(request, set(order))}
        loops: builtins.list[dict[str, Any]] = []
        async with context(request).db.session() as session:
            for loop_id in order:
                row = rows.get(loop_id)
                if row is None:
                    continue
                stale = documents.loaded(DocKind.LOOP, row.id) is None and (
                    await stored.has_unsnapshotted_updates(session, resource_type="loop", resource_id=row.id)
                )
                content = await documents.read_content(DocKind.LOOP, row.id, stale=stale)
                data = LoopPublic.model_validate(row).model_dump(mode="json", by_alias=True)
                loops.append(data | (content or {}))
        return loops, [loop_id for loop_id in order if loop_id not in rows]

    async def presence(self, request: web.Request) -> web.Response:
        row, _role, _stale = await self._readable(request)
        members = await context(request).documents.presence(self.kind.doc_kind, row.id)
        return json_model(Presence.model_validate({"members": members}))

    def _check_role(self, role: Role | None, *, editor_may: bool) -> None:
        """The caller must own the document (or, with ``editor_may``, be an editor)."""
        if role is None:
            raise self._not_found()
        if role is not Role.OWNER and not (editor_may and role.can_write):
            raise Forbidden(f"only the owner may change or delete this {self.kind.name}")

    async def _owned(self, request: web.Request, *, editor_may: bool = False) -> Loop | Song:
        """The document if the caller owns it (or, with ``editor_may``, is an editor)."""
        ctx = context(request)
        document_id = path_uuid(request)
        caller = await require_caller(request)
        async with ctx.db.session() as session:
            row = await library.get_document(session, self.kind.model, document_id)
            role = await resolve_role(session, row, user_id=caller.user_id) if row is not None else None
        self._check_role(role, editor_may=editor_may)
        assert row is not None  # a role means a row
        return row

    async def update(self, request: web.Request) -> web.Response:
        """Content goes through the live document: one CRDT update, folded into the row at once,
        whose saved row (with the live content) is the answer; the role is checked once, by the
        document service, from the access rules it loads with the document. Visibility is SQL
        and the owner's. A content write on a document nobody has open is three transactions."""
        ctx = context(request)
        document_id = path_uuid(request)  # a bad id or a missing token is reported before the body is read
        caller = await require_caller(request)
        payload = await read_json(request, self.kind.update)
        visibility = payload.model_dump(include=SQL_FIELDS, exclude_unset=True)
        content = _content(payload, only_sent=True)
        row: Any = None
        live: dict[str, Any] | None = None
        if content:
            try:
                written = await ctx.documents.write_content(
                    self.kind.doc_kind,
                    document_id,
                    content,
                    set(content),
                    user_id=caller.user_id,
                    owner_only=bool(visibility),  # editors change content; visibility stays the owner's
                )
            except ValueError as exc:
                raise BadRequest(f"invalid {self.kind.name}: {exc}") from None
            # A RealtimeError (too large, storage backlog) is answered by the error middleware.
            row, live = written.row, written.content
        if visibility or row is None:  # visibility to set, or nothing written (then nothing to invalidate)
            row, was_public = await self._stored_row(
                ctx, document_id, caller.user_id, visibility, role_checked=bool(content)
            )
            if visibility and visibility["is_public"] != was_public:
                await ctx.documents.access_changed(self.kind.doc_kind, document_id)  # drops cached reads too
            elif visibility:
                ctx.documents.read_cache.invalidate(self.kind.name, document_id)
        data = self._data(row, live)
        if self.kind.doc_kind is DocKind.SONG:
            sent = content.get("timeline")
            data["warnings"] = (
                [] if sent is None else await self._timeline_warnings(request, data["timeline"])
            )
        return json_response(data)

    async def _stored_row(
        self,
        ctx: RestContext,
        document_id: uuid.UUID,
        user_id: uuid.UUID,
        visibility: dict[str, Any],
        *,
        role_checked: bool,
    ) -> tuple[Loop | Song, bool]:
        """The row and whether it was public, after setting ``visibility`` (if any), in one
        transaction that also checks the caller's role (unless ``role_checked``)."""
        begin = ctx.db.write_session if visibility else ctx.db.session
        async with begin() as session:
            row = await library.get_document(session, self.kind.model, document_id)
            if row is None:
                raise self._not_found()
            if not role_checked:
                role = await resolve_role(session, row, user_id=user_id)
                self._check_role(role, editor_may=not visibility)
            was_public = row.is_public
            if visibility:
                await library.update_document(session, row, visibility)
                if row.is_public != was_public:
                    await outbox.record(
                        session,
                        f"{self.kind.name}.visibility_changed",
                        {self.kind.name: document_ref(row), "isPublic": row.is_public},
                        actor_id=user_id,
                        document=row,
                    )
        return row, was_public

    async def delete(self, request: web.Request) -> web.Response:
        ctx = context(request)
        row = await self._owned(request)
        async with ctx.db.write_session() as session:
            fresh = await library.get_document(session, self.kind.model, row.id)
            if fresh is None:
                raise self._not_found()
            await outbox.record(
                session,
                f"{self.kind.name}.deleted",
                {self.kind.name: document_ref(fresh)},
                actor_id=fresh.user_id,
            )
            await library.delete_document(session, fresh)
            await stored.delete_document_log(session, resource_type=self.kind.name, resource_id=row.id)
        await ctx.documents.document_deleted(self.kind.doc_kind, row.id)
        return json_model(Success())
