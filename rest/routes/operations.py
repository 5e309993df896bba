"""The routes of operations: liveness, readiness, metrics."""

from __future__ import annotations

from rest import system
from rest.openapi import Route
from rest.schemas import Health, Readiness


def routes() -> list[Route]:
    return [
        Route("GET", "/healthz", system.healthz, "Liveness", "system", auth="none", response=Health),
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
