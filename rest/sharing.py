"""Share links, the shared-document read, forks, and view counting.

A share token reads one document (REST, public pages, the live room read-only). Views of a
public or shared document are counted by :class:`storage.views.ViewCounter`, never by the
owner. A fork is a new document whose first update is the parent's live content.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aiohttp import web
from pycrdt import Doc
from sqlalchemy import update
from sqlalchemy.orm import defer

from events import outbox
from identity.authenticator import Caller
from music.columns import content_columns
from music.ids import parse_canonical_uuid
from music.kinds import DocKind
from music.reading import doc_to_content
from music.roles import Role
from music.writing import content_to_update
from rest import library
from rest.context import (
    RestContext,
    context,
    json_model,
    optional_caller,
    path_uuid,
    read_body,
    read_json,
    read_query,
    require_caller,
)
from rest.library import LOOPS, SONGS, DocumentKind
from rest.responses import json_response
from rest.samples import loop_samples
from rest.schemas import (
    ForkRequest,
    OwnerPublic,
    ShareCreate,
    SharedDocument,
    ShareList,
    SharePublic,
    SongQuery,
    Success,
)
from storage import document_store as stored
from storage import library as stored_library
from storage import sharing
from storage.access import is_visible, readable_loops, resolve_role
from storage.errors import Forbidden, NotFound
from storage.models import Loop, SharedLink, Song, User, utcnow

KINDS = {kind.name: kind for kind in (LOOPS, SONGS)}


async def document_with_role(
    ctx: RestContext,
    kind: DocumentKind,
    document_id: uuid.UUID,
    *,
    user_id: uuid.UUID | None,
    share_token: str | None = None,
) -> tuple[Loop | Song, Role]:
    """The document (without its Yjs state) and the caller's role; 404 when the caller may not
    even read it."""
    async with ctx.db.session() as session:
        row = await stored_library.get_document(session, kind.model, document_id, with_state=False)
        role = (
            await resolve_role(session, row, user_id=user_id, share_token=share_token)
            if row is not None
            else None
        )
    if row is None or role is None:
        raise NotFound(f"{kind.name} not found")
    return row, role


async def owned_document(request: web.Request, kind: DocumentKind, action: str) -> tuple[Loop | Song, Caller]:
    """The document if the caller owns it: 404 if they cannot read it, 403 if they only can."""
    caller = await require_caller(request)
    row, role = await document_with_role(context(request), kind, path_uuid(request), user_id=caller.user_id)
    if role is not Role.OWNER:
        raise Forbidden(f"only the owner may {action} this {kind.name}")
    return row, caller


async def live_public(ctx: RestContext, kind: DocumentKind, row: Loop | Song) -> dict[str, Any]:
    """The document's REST representation with its live content (never staler than a relay)."""
    async with ctx.db.session() as session:
        stale = ctx.documents.loaded(kind.doc_kind, row.id) is None and (
            await stored.has_unsnapshotted_updates(session, resource_type=kind.name, resource_id=row.id)
        )
    content = await ctx.documents.read_content(kind.doc_kind, row.id, stale=stale)
    data: dict[str, Any] = kind.public.model_validate(row).model_dump(mode="json", by_alias=True)
    if content is not None:
        data.update(content)
    return data


def count_view(request: web.Request, kind: DocumentKind, row: Loop | Song, user_id: uuid.UUID | None) -> None:
    """Note a view (batched; the response does not wait). The owner's own views never count."""
    if user_id is None or user_id != row.user_id:
        library.count_view(request, kind.name, row.id, user_id)


def _share_public(ctx: RestContext, link: SharedLink) -> SharePublic:
    state = sharing.state_of(link, utcnow())
    return SharePublic.model_validate(
        {
            "share_url": f"{ctx.settings.public_base_url}/{link.resource_type}/{link.share_token}",
            "share_token": link.share_token,
            "resource_type": link.resource_type,
            "resource_id": link.resource_id,
            "created_at": link.created_at,
            "expires_at": link.expires_at,
            "expired": state is sharing.ShareState.EXPIRED,
        }
    )


@dataclass(frozen=True)
class SharedResource:
    kind: DocumentKind
    link: SharedLink
    row: Loop | Song
    owner: User | None


async def public_timeline_loops(ctx: RestContext, timeline: list[dict[str, Any]]) -> list[Loop]:
    """The loops of a shared song's timeline that anyone may read (public ones), in timeline
    order. A song's share link does not open its owner's private loops."""
    order = list(dict.fromkeys(str(block.get("loopId")) for block in timeline))
    ids = {parsed for value in order if (parsed := parse_canonical_uuid(value)) is not None}
    async with ctx.db.session() as session:
        rows = {str(row.id): row for row in await readable_loops(session, ids=ids, user_id=None)}
    return [rows[loop_id] for loop_id in order if loop_id in rows]


async def open_share(ctx: RestContext, token: str) -> SharedResource:
    """What a share token opens, or ShareNotFound / ShareExpired / ShareRevoked."""
    async with ctx.db.session() as session:
        link = sharing.raise_unless_live(await sharing.find_share(session, token))
        kind = KINDS[link.resource_type]
        # Without its Yjs state (up to RT_MAX_DOCUMENT_BYTES): readers of a link get JSON.
        model = kind.model
        row: Loop | Song | None = await session.get(  # type: ignore[assignment]  # mypy: a union of models
            model, link.resource_id, options=[defer(model.doc_state)]
        )
        if row is None:
            raise sharing.ShareNotFound("the shared document no longer exists")
        if not is_visible(row, None):  # hidden by a moderator: gone for everyone holding a link
            raise sharing.ShareHidden("this content was removed by a moderator")
        owner = await session.get(User, row.user_id)
    return SharedResource(kind, link, row, owner)


class ShareHandlers:
    """``POST /api/<kind>s/:id/share`` and ``GET /api/<kind>s/:id/shares`` for one kind."""

    def __init__(self, kind: DocumentKind) -> None:
        self.kind = kind

    async def create(self, request: web.Request) -> web.Response:
        ctx = context(request)
        path_uuid(request)
        await require_caller(request)
        payload = await _optional_body(request, ShareCreate)
        row, caller = await owned_document(request, self.kind, "share")
        expires_in = timedelta(days=payload.expires_in) if payload.expires_in is not None else None
        async with ctx.db.write_session() as session:
            if await stored_library.get_document(session, self.kind.model, row.id) is None:
                raise NotFound(f"{self.kind.name} not found")
            link = await sharing.create_share(
                session,
                resource_type=self.kind.name,
                resource_id=row.id,
                created_by=caller.user_id,
                expires_in=expires_in,
            )
            await outbox.record(
                session,
                f"{self.kind.name}.shared",
                {self.kind.name: outbox.document_ref(row), "role": "viewer"},
                actor_id=caller.user_id,
                document=row,
            )
        return json_model(_share_public(ctx, link), status=201)

    async def list(self, request: web.Request) -> web.Response:
        ctx = context(request)
        row, _caller = await owned_document(request, self.kind, "list the share links of")
        async with ctx.db.session() as session:
            links = await sharing.list_shares(session, resource_type=self.kind.name, resource_id=row.id)
        return json_model(ShareList(shares=[_share_public(ctx, link) for link in links]))


async def revoke_share(request: web.Request) -> web.Response:
    """``DELETE /api/shares/:token``: only the owner of the shared document may revoke it."""
    ctx = context(request)
    caller = await require_caller(request)
    token = request.match_info["token"]
    async with ctx.db.write_session() as session:
        lookup = await sharing.find_share(session, token)
        if lookup is None:
            raise sharing.ShareNotFound("this share link does not exist")
        kind = KINDS[lookup.link.resource_type]
        row = await stored_library.get_document(session, kind.model, lookup.link.resource_id)
        role = await resolve_role(session, row, user_id=caller.user_id) if row is not None else None
        if row is None or role is None:
            raise sharing.ShareNotFound("this share link does not exist")
        if role is not Role.OWNER:
            raise Forbidden(f"only the owner may revoke the share links of this {kind.name}")
        if lookup.state is sharing.ShareState.REVOKED:
            raise sharing.ShareRevoked("this share link was already revoked")
        await sharing.revoke_share(session, lookup.link)
    await ctx.documents.access_changed(kind.doc_kind, row.id)
    return json_model(Success())


async def get_shared(request: web.Request) -> web.Response:
    """``GET /api/shared/:token`` (no sign-in needed): the document and its owner."""
    ctx = context(request)
    shared = await open_share(ctx, request.match_info["token"])
    caller = await optional_caller(request)
    query = read_query(request, SongQuery)
    data = await live_public(ctx, shared.kind, shared.row)
    if shared.kind.doc_kind is DocKind.LOOP:  # the samples its steps play, with URLs for this reader
        assert isinstance(shared.row, Loop)
        data["samples"] = await loop_samples(request, shared.row, data)
    elif query.include == "loops":
        data["loops"] = [
            await live_public(ctx, LOOPS, row) for row in await public_timeline_loops(ctx, data["timeline"])
        ]
    count_view(request, shared.kind, shared.row, caller.user_id if caller else None)
    owner = OwnerPublic(
        display_name=shared.owner.display_name if shared.owner else None,
        avatar_url=shared.owner.avatar_url if shared.owner else None,
    )
    return json_model(SharedDocument(resource_type=shared.kind.name, data=data, owner=owner))  # type: ignore[arg-type]


class ForkHandlers:
    """``POST /api/<kind>s/:id/fork``: a private copy for the caller, counted on the parent."""

    def __init__(self, kind: DocumentKind) -> None:
        self.kind = kind

    async def fork(self, request: web.Request) -> web.Response:
        ctx = context(request)
        parent_id = path_uuid(request)
        caller = await require_caller(request)
        payload = await _optional_body(request, ForkRequest)
        parent, _role = await document_with_role(
            ctx, self.kind, parent_id, user_id=caller.user_id, share_token=payload.share_token
        )
        # The parent's live content (its room holds every relayed edit), as a new document
        # with its own history: the copy's first update is made here, once.
        room = await ctx.documents.open_room(self.kind.doc_kind, parent.id)
        row = await create_fork(ctx, self.kind, parent.id, caller.user_id, room.content())
        return json_response(
            self.kind.public.model_validate(row).model_dump(mode="json", by_alias=True), status=201
        )


async def create_fork(
    ctx: RestContext, kind: DocumentKind, parent_id: uuid.UUID, user_id: uuid.UUID, content: dict[str, Any]
) -> Loop | Song:
    """A private copy of ``content`` for ``user_id``, counted as a fork of the parent (its
    live content, or a version of it)."""
    state = content_to_update(kind.doc_kind, content)
    doc: Doc[Any] = Doc()
    doc.apply_update(state)
    values = content_columns(doc_to_content(kind.doc_kind, doc))
    values.update(is_public=False, doc_state=state, forked_from=parent_id)
    model = kind.model
    async with ctx.db.write_session() as session:
        counted = await session.execute(
            update(model).where(model.id == parent_id).values(fork_count=model.fork_count + 1)
        )
        if counted.rowcount != 1:  # type: ignore[attr-defined]
            raise NotFound(f"{kind.name} not found")
        row = await stored_library.create_document(
            session, model, user_id=user_id, values=values, quota=kind.quota(ctx.settings)
        )
        parent = await session.get(model, parent_id)
        # Its fork count was just raised in this transaction; a loop's or a song's row.
        assert isinstance(parent, Loop | Song)
        await outbox.record(
            session,
            f"{kind.name}.forked",
            {kind.name: outbox.document_ref(parent), "fork": outbox.document_ref(row)},
            actor_id=user_id,
            document=parent,
        )
    ctx.documents.read_cache.invalidate(kind.name, parent_id)
    return row


async def _optional_body(request: web.Request, model: type[Any]) -> Any:
    """A JSON body that may be left out entirely (then every field takes its default)."""
    if not await read_body(request):  # in time; aiohttp keeps it, so read_json reads it again
        return model()
    return await read_json(request, model)
