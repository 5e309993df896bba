"""The app factory: every resource is opened here, in dependency order, and closed in reverse."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from functools import partial
from importlib.metadata import version

import aiohttp_cors
from aiohttp import web

from identity.firebase import FirebaseVerifier
from identity.tokens import TokenIssuer
from rest.context import REST_CONTEXT, FirebaseAccounts, RestContext
from rest.errors import error_middleware
from rest.routes import add_routes
from settings import Settings, load_or_create_secret
from storage.database import Database
from storage.migrate import check_up_to_date

log = logging.getLogger(__name__)


async def _resources(settings: Settings, app: web.Application) -> AsyncIterator[None]:
    secret = load_or_create_secret(settings)
    async with AsyncExitStack() as stack:
        db = await stack.enter_async_context(Database(settings.effective_database_url))
        await check_up_to_date(db)
        verifier = None
        if settings.firebase_project_id:
            verifier = await stack.enter_async_context(
                FirebaseVerifier(settings.firebase_project_id, settings.firebase_cert_url)
            )
        app[REST_CONTEXT] = RestContext(
            settings=settings,
            db=db,
            tokens=TokenIssuer(secret, access_ttl=settings.access_token_ttl),
            firebase=FirebaseAccounts(verifier, db),
        )
        log.info("database: %s; firebase: %s", db.dialect, settings.firebase_project_id or "off")
        yield


def create_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=settings.max_json_body_bytes)
    app.cleanup_ctx.append(partial(_resources, settings))
    add_routes(app, public_base_url=settings.public_base_url, version=version("musicplayground-server"))
    cors = aiohttp_cors.setup(
        app,
        defaults={
            origin: aiohttp_cors.ResourceOptions(
                allow_credentials=True,
                allow_headers=("Authorization", "Content-Type"),
                expose_headers=("Retry-After",),
                allow_methods=("GET", "POST", "PATCH", "PUT", "DELETE"),
                max_age=3600,
            )
            for origin in settings.cors_origins
        },
    )
    for route in list(app.router.routes()):
        cors.add(route)
    return app
