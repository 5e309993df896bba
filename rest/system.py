"""Operational endpoints: liveness, readiness, the OpenAPI document."""

from __future__ import annotations

import logging

from aiohttp import web

from rest.context import context
from rest.errors import error_response

log = logging.getLogger(__name__)

OPENAPI_DOCUMENT = web.AppKey("openapi_document", dict)


async def healthz(request: web.Request) -> web.Response:
    """The process is up and serving."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready for traffic: the database answers. Also reports the bus: while it is down the
    instance keeps serving its own clients (and catches up when it is back), so a lost bus
    is ``degraded``, not unready: taking every instance out at once would be worse."""
    ctx = context(request)
    try:
        await ctx.db.ping()
    except Exception:
        log.warning("readiness check: database unreachable", exc_info=True)
        return error_response(503, "not_ready", "database unreachable")
    bus = ctx.documents.bus
    state = bus.state.value
    return web.json_response(
        {
            "status": "ok" if state == "up" else "degraded",
            "bus": {"state": state, "backend": type(bus).__name__, "outages": bus.outages},
        }
    )


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI_DOCUMENT])
