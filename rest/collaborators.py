"""Collaborators of a loop or song: the owner adds users by username as editors or viewers.

Every change is applied to open sockets at once (``DocumentService.access_changed``): a
removed collaborator is disconnected with ``access_revoked``, a downgraded one gets
``role-changed``.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import TypeAdapter, ValidationError

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
        await ctx.documents.access_changed(self.kind.doc_kind, row.id)
        return json_model(_public(entry), status=201)

    async def update(self, request: web.Request) -> web.Response:
        ctx = context(request)
        path_uuid(request)
        username = _path_username(request)
        await require_caller(request)
        payload = await read_json(request, CollaboratorUpdate)
        row, _caller = await owned_document(request, self.kind, "manage the collaborators of")
        async with ctx.db.write_session() as session:
            entry = await collaborators.set_role(
                session, resource_id=row.id, username=username, role=payload.role
            )
        await ctx.documents.access_changed(self.kind.doc_kind, row.id)
        return json_model(_public(entry))

    async def remove(self, request: web.Request) -> web.Response:
        ctx = context(request)
        path_uuid(request)
        username = _path_username(request)
        row, _caller = await owned_document(request, self.kind, "manage the collaborators of")
        async with ctx.db.write_session() as session:
            await collaborators.remove_collaborator(session, resource_id=row.id, username=username)
        await ctx.documents.access_changed(self.kind.doc_kind, row.id)
        return json_model(Success())
