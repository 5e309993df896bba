"""The routes of the binary document API: each kind's Yjs state, read and written."""

from __future__ import annotations

from rest.library import LOOPS, SONGS
from rest.openapi import Route
from rest.yjs_documents import YjsApplied, YjsDocumentHandlers, YjsQuery, YjsWriteQuery


def routes() -> list[Route]:
    return [*_routes(YjsDocumentHandlers(LOOPS)), *_routes(YjsDocumentHandlers(SONGS))]


def _routes(handlers: YjsDocumentHandlers) -> list[Route]:
    kind = handlers.kind
    path, tag = f"/api/{kind.plural}/{{id}}/yjs", kind.plural
    return [
        Route(
            "GET",
            path,
            handlers.get_yjs,
            f"The {kind.name}'s Yjs document as one update (or what a state vector lacks)",
            tag,
            auth="optional",
            query=YjsQuery,
            binary_response=True,
            errors=(400, 401, 404),
        ),
        Route(
            "POST",
            path,
            handlers.post_yjs,
            f"Apply a Yjs update to the {kind.name} as the caller (the checks of a live edit)",
            tag,
            auth="optional",
            query=YjsWriteQuery,
            binary_body=True,
            response=YjsApplied,
            errors=(400, 401, 403, 404, 409, 413, 415, 503),
        ),
    ]
