"""The routes of loops and songs: create, list, read, update, delete, presence (one table per kind)."""

from __future__ import annotations

from rest.library import LOOPS, SONGS, DocumentHandlers
from rest.openapi import Route
from rest.schemas import ListQuery, Presence, Success


def routes() -> list[Route]:
    return [*_document_routes(DocumentHandlers(LOOPS)), *_document_routes(DocumentHandlers(SONGS))]


def _document_routes(handlers: DocumentHandlers) -> list[Route]:
    kind = handlers.kind
    base, item, tag = f"/api/{kind.plural}", f"/api/{kind.plural}/{{id}}", kind.plural
    return [
        Route(
            "GET",
            base,
            handlers.list,
            f"List your {kind.plural} (paginated)",
            tag,
            query=ListQuery,
            response=kind.listing,
            errors=(400,),
        ),
        Route(
            "POST",
            base,
            handlers.create,
            f"Create a {kind.name}",
            tag,
            body=kind.create,
            response=kind.written or kind.public,
            status=201,
            errors=(403,),
        ),
        Route(
            "GET",
            item,
            handlers.get,
            f"Get a {kind.name} (yours, or public)",
            tag,
            auth="optional",
            query=kind.item_query,
            response=kind.detail or kind.public,
            errors=(400, 401, 404),
        ),
        Route(
            "PATCH",
            item,
            handlers.update,
            f"Update your {kind.name} (partial)",
            tag,
            body=kind.update,
            response=kind.written or kind.public,
            errors=(403, 404, 503),  # 503 storage_backlog, with Retry-After
        ),
        Route(
            "DELETE",
            item,
            handlers.delete,
            f"Delete your {kind.name}",
            tag,
            response=Success,
            errors=(400, 403, 404),
        ),
        Route(
            "GET",
            f"{item}/presence",
            handlers.presence,
            f"Who is editing the {kind.name} right now",
            tag,
            auth="optional",
            response=Presence,
            errors=(400, 401, 404),
        ),
    ]
