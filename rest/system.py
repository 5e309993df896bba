"""Operational endpoints: liveness, readiness, the OpenAPI document."""

from __future__ import annotations

import logging

from aiohttp import web

from rest import rate_limits
from rest.context import context
from rest.errors import error_response

log = logging.getLogger(__name__)

OPENAPI_DOCUMENT = web.AppKey("openapi_document", dict)


async def healthz(request: web.Request) -> web.Response:
    """The process is up and serving."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready for traffic: the database answers. Rate-limit counters are reported, not required."""
    try:
        await context(request).db.ping()
    except Exception:
        log.warning("readiness check: database unreachable", exc_info=True)
        return error_response(503, "not_ready", "database unreachable")
    return web.json_response({"status": "ok", **rate_limits.readiness(request)})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI_DOCUMENT])
