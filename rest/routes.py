"""Every REST endpoint, in one table: aiohttp routes and OpenAPI come from it."""

from __future__ import annotations

from aiohttp import web

from rest import auth, system
from rest.asyncapi import build_asyncapi
from rest.community import community_routes
from rest.library import LOOPS, SONGS, DocumentHandlers
from rest.openapi import Route, build_openapi
from rest.samples import sample_routes
from rest.schemas import (
    AuthSession,
    Health,
    LinkRequest,
    ListQuery,
    Presence,
    Readiness,
    RefreshRequest,
    Success,
    UserPublic,
)
from rest.sharing_routes import sharing_routes


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


def api_routes() -> list[Route]:
    return [
        Route(
            "POST",
            "/api/auth/anonymous",
            auth.create_anonymous,
            "Create an anonymous account and sign in",
            "auth",
            auth="none",
            response=AuthSession,
            status=201,
        ),
        Route(
            "POST",
            "/api/auth/refresh",
            auth.refresh,
            "Trade a refresh token for new tokens (rotates it)",
            "auth",
            auth="none",
            body=RefreshRequest,
            response=AuthSession,
            errors=(401,),
        ),
        Route(
            "POST",
            "/api/auth/logout",
            auth.sign_out,
            "Revoke a refresh token and its chain",
            "auth",
            auth="none",
            body=RefreshRequest,
            response=Success,
        ),
        Route(
            "POST",
            "/api/auth/link",
            auth.link,
            "Link the caller's anonymous account to a Firebase identity (merging if it exists)",
            "auth",
            body=LinkRequest,
            response=AuthSession,
            errors=(404, 409, 503),
        ),
        Route("GET", "/api/users/me", auth.me, "The caller's account", "users", response=UserPublic),
        *_document_routes(DocumentHandlers(LOOPS)),
        *_document_routes(DocumentHandlers(SONGS)),
        *sharing_routes(),
        *sample_routes(),
        *community_routes(),
        Route("GET", "/healthz", system.healthz, "Liveness", "system", auth="none", response=Health),
        *_operations_routes(),
    ]


def _operations_routes() -> list[Route]:
    return [
        Route(
            "GET",
            "/readyz",
            system.readyz,
            "Readiness: database, bus, update log (503 lists the failing checks in details)",
            "system",
            auth="none",
            response=Readiness,
            errors=(503,),
        ),
        Route(
            "GET",
            "/metrics",
            system.metrics,
            "Prometheus metrics (text format); needs 'Bearer <METRICS_TOKEN>' when that is set",
            "system",
            auth="none",
            errors=(401,),
        ),
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
