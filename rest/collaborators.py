"""Collaborators of a loop or song: the owner adds users by username as editors or viewers.

Every change is applied to open sockets at once (``DocumentService.access_changed``): a
removed collaborator is disconnected with ``access_revoked``, a downgraded one gets
``role-changed``.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from events import outbox
from music.roles import Role
from rest.context import context, json_model, path_uuid, read_json, require_caller
from rest.errors import BadRequest
from rest.library import DocumentKind
from rest.schemas import (
    CollaboratorAdd,
    CollaboratorList,
    CollaboratorPublic,
    CollaboratorUpdate,
    Success,
    Username,
)
from rest.sharing import document_with_role, owned_document
from storage import collaborators
from storage.errors import Forbidden
from storage.models import Loop, Song

_USERNAME = TypeAdapter(Username)


def _path_username(request: web.Request) -> str:
    raw = request.match_info["username"]
    try:
        return _USERNAME.validate_python(raw)
    except ValidationError:
        raise BadRequest(
            f"{raw[:40]!r} is not a valid username (3 to 30 characters: a-z, 0-9 and '_')",
            details=[{"field": "username"}],
        ) from None


def _public(entry: collaborators.CollaboratorEntry) -> CollaboratorPublic:
    return CollaboratorPublic.model_validate(entry, from_attributes=True)


class CollaboratorHandlers:
    def __init__(self, kind: DocumentKind) -> None:
        self.kind = kind

    async def list(self, request: web.Request) -> web.Response:
        """Owner and collaborators see who else has access; readers of a public document get a
        403, everyone else a 404."""
        ctx = context(request)
        caller = await require_caller(request)
        row, role = await document_with_role(ctx, self.kind, path_uuid(request), user_id=caller.user_id)
        async with ctx.db.session() as session:
            if role is not Role.OWNER and (
                await collaborators.collaborator_role(session, resource_id=row.id, user_id=caller.user_id)
                is None
            ):  # a reader of a public document is no collaborator
                raise Forbidden(
                    f"only the owner and collaborators may list the collaborators of this {self.kind.name}"
                )
            entries = await collaborators.list_collaborators(session, resource_id=row.id)
        return json_model(CollaboratorList(collaborators=[_public(e) for e in entries]))

    async def add(self, request: web.Request) -> web.Response:
        ctx = context(request)
        path_uuid(request)
        await require_caller(request)
        payload = await read_json(request, CollaboratorAdd)
        row, _caller = await owned_document(request, self.kind, "manage the collaborators of")
        async with ctx.db.write_session() as session:
            entry = await collaborators.add_collaborator(
                session,
                resource_type=self.kind.name,
                resource_id=row.id,
                owner_id=row.user_id,
                username=payload.username,
                role=payload.role,
            )
            await _record(session, "added", row, entry.user_id, _caller.user_id, role=entry.role)
        await ctx.documents.access_changed(self.kind.doc_kind, row.id)
        return json_model(_public(entry), status=201)

    async def update(self, request: web.Request) -> web.Response:
        ctx = context(request)
        path_uuid(request)
        username = _path_username(request)
        await require_caller(request)
        payload = await read_json(request, CollaboratorUpdate)
        row, caller = await owned_document(request, self.kind, "manage the collaborators of")
        async with ctx.db.write_session() as session:
            entry = await collaborators.set_role(
                session, resource_id=row.id, username=username, role=payload.role
            )
            await _record(session, "role_changed", row, entry.user_id, caller.user_id, role=entry.role)
        await ctx.documents.access_changed(self.kind.doc_kind, row.id)
        return json_model(_public(entry))

    async def remove(self, request: web.Request) -> web.Response:
        ctx = context(request)
        path_uuid(request)
        username = _path_username(request)
        row, caller = await owned_document(request, self.kind, "manage the collaborators of")
        async with ctx.db.write_session() as session:
            removed = await collaborators.remove_collaborator(session, resource_id=row.id, username=username)
            await _record(session, "removed", row, removed, caller.user_id)
        await ctx.documents.access_changed(self.kind.doc_kind, row.id)
        return json_model(Success())


async def _record(
    session: AsyncSession,
    change: str,
    document: Loop | Song,
    user_id: uuid.UUID,
    actor_id: uuid.UUID,
    *,
    role: str | None = None,
) -> None:
    """The outbox event of a collaborator change, told to that collaborator."""
    kind = "loop" if isinstance(document, Loop) else "song"
    data: dict[str, Any] = {kind: outbox.document_ref(document), "userId": str(user_id)}
    if role is not None:
        data["role"] = role
    await outbox.record(session, f"{kind}.collaborator_{change}", data, actor_id=actor_id, document=document)
