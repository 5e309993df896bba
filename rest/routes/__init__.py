"""Every REST endpoint, in one table assembled from one module per feature.

Each module of this package lists its feature's routes (method, path, handler, summary, the
models of its query, body and answer, its error statuses): the aiohttp routes and the
OpenAPI document are both made from these rows, so they cannot disagree.
"""

from __future__ import annotations

from aiohttp import web

from rest import system
from rest.asyncapi import build_asyncapi
from rest.openapi import Route, build_openapi
from rest.routes import (
    accounts,
    community,
    history,
    library,
    notifications,
    operations,
    samples,
    sharing,
    yjs_documents,
)


def api_routes() -> list[Route]:
    return [
        *accounts.routes(),
        *library.routes(),
        *yjs_documents.routes(),
        *sharing.routes(),
        *samples.routes(),
        *community.routes(),
        *operations.routes(),
        *history.routes(),
        *notifications.routes(),
    ]


def add_routes(app: web.Application, *, public_base_url: str, version: str) -> None:
    routes = api_routes()
    for route in routes:
        app.router.add_route(route.method, route.path, route.handler)
    app[system.OPENAPI_DOCUMENT] = build_openapi(
        routes, title="Music Playground API", version=version, server_url=public_base_url
    )
    app.router.add_get("/api/openapi.json", system.openapi)
    # The socket events, beside it (the Socket.IO endpoint is no REST route).
    app[system.ASYNCAPI_DOCUMENT] = build_asyncapi(version=version, server_url=public_base_url)
    app.router.add_get("/api/asyncapi.json", system.asyncapi)
