"""Operational endpoints: liveness, readiness, metrics, the OpenAPI document."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from rest.context import context
from rest.errors import error_response
from rest.responses import json_response
from rest.schemas import BusStatus, CheckResult, Readiness

log = logging.getLogger(__name__)

OPENAPI_DOCUMENT = web.AppKey("openapi_document", dict)
ASYNCAPI_DOCUMENT = web.AppKey("asyncapi_document", dict)
# How long one readiness probe may take before it counts as failed.
CHECK_TIMEOUT = 5.0


@dataclass(frozen=True)
class ReadinessCheck:
    """One named dependency of readiness. ``probe`` returns a short detail (``"sqlite"``,
    ``"in-process"``) or raises if the dependency is not usable."""

    name: str
    probe: Callable[[], Awaitable[str]]


class Degraded(Exception):
    """Raised by a probe whose dependency is down while the instance can still serve."""


READINESS_CHECKS = web.AppKey("readiness_checks", list[ReadinessCheck])
# Renders the Prometheus exposition: (body, content type). Set by the composition root.
METRICS_EXPOSITION = web.AppKey[Callable[[], tuple[bytes, str]]]("metrics_exposition")


async def healthz(request: web.Request) -> web.Response:
    """The process is up and serving."""
    return json_response({"status": "ok"})


async def _run(check: ReadinessCheck) -> CheckResult:
    try:
        detail = await asyncio.wait_for(check.probe(), CHECK_TIMEOUT)
    except Degraded as exc:
        return CheckResult(name=check.name, status="degraded", detail=str(exc)[:500])
    except Exception as exc:
        log.warning("readiness check %s failed: %s", check.name, exc or type(exc).__name__)
        detail = str(exc) or type(exc).__name__
        return CheckResult(name=check.name, status="failing", detail=detail[:500])
    return CheckResult(name=check.name, status="ok", detail=detail[:500])


async def readyz(request: web.Request) -> web.Response:
    """Ready for traffic: every registered check passes (database, bus, update log, …)."""
    results = await asyncio.gather(*(_run(check) for check in request.app[READINESS_CHECKS]))
    failing = [r.name for r in results if r.status == "failing"]
    if failing:
        return error_response(
            503,
            "not_ready",
            f"not ready: {', '.join(failing)} failing",
            details=[r.model_dump(by_alias=True) for r in results],
        )
    bus = context(request).documents.bus
    degraded = any(r.status == "degraded" for r in results)
    return json_response(
        Readiness(
            status="degraded" if degraded else "ok",
            checks=list(results),
            bus=BusStatus(state=bus.state.value, backend=type(bus).__name__, outages=bus.outages),
        )
    )


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition; with ``METRICS_TOKEN`` set, only for ``Bearer <token>``."""
    expected = context(request).settings.metrics_token
    if expected is not None:
        sent = request.headers.get("Authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {expected}".encode()):
            return error_response(
                401,
                "unauthorized",
                "metrics need 'Authorization: Bearer <METRICS_TOKEN>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
    body, content_type = request.app[METRICS_EXPOSITION]()
    return web.Response(body=body, headers={"Content-Type": content_type})


async def openapi(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI_DOCUMENT])


async def asyncapi(request: web.Request) -> web.Response:
    return json_response(request.app[ASYNCAPI_DOCUMENT])
