"""Rate limits at the HTTP edge: per user per hour, and per client IP where there is no user.

Every limited request is counted in one or more quotas (``storage.counters``), keyed by the
caller's user id, or by the client IP when no valid token was sent:

- ``GET``/``HEAD``: ``RATE_LIMIT_GET_PER_HOUR``;
- ``POST``/``PATCH``/``PUT``/``DELETE``: ``RATE_LIMIT_MUTATIONS_PER_HOUR``;
- ``POST /api/samples/upload`` also: ``RATE_LIMIT_UPLOADS_PER_HOUR``;
- ``POST /api/auth/anonymous`` also, always per IP: ``RATE_LIMIT_ANONYMOUS_ACCOUNTS_PER_IP_PER_HOUR``.

Socket.IO connection attempts are counted per IP (``RATE_LIMIT_SOCKET_CONNECTS_PER_IP_PER_MINUTE``):
every new Engine.IO session here, at its WebSocket handshake (a 429 past the limit), so that
sessions which never connect a namespace are counted too, and every namespace connect after a
session's first by :meth:`RateLimiter.socket_connect_refusal`, which the socket server calls on
connect (the first was counted with the handshake).
Migrations (``RATE_LIMIT_MIGRATIONS_PER_HOUR``) are counted by ``POST /api/migrate`` itself
from the database, so that only a request that migrates new work uses one up.

Responses carry ``RateLimit-Limit``, ``RateLimit-Remaining`` and ``RateLimit-Reset`` (IETF
draft RateLimit header fields; the quota closest to exhaustion is the one reported); a
refusal is a 429 with ``Retry-After``. When the counter storage (Redis) is down, requests are
let through (fail open), the outage is logged and ``/readyz`` reports it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from identity.errors import InvalidToken
from identity.firebase import FirebaseUnavailable
from rest.client_address import client_ip, request_ip, trusted_networks
from rest.context import optional_caller
from rest.errors import error_response
from settings import Settings
from storage.counters import Counters, CountersUnavailable, Decision, Quota
from storage.errors import DomainError, RateLimited

log = logging.getLogger(__name__)

HOUR = 3600
MINUTE = 60
# Never counted: probes, the API description, the socket transport (limited on connect).
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/api/openapi.json", "/api/asyncapi.json"})
EXEMPT_PREFIXES = ("/socket.io",)
READ_METHODS = frozenset({"GET", "HEAD"})
MUTATION_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})


def is_rate_limited(method: str, path: str) -> bool:
    """Whether requests to ``path`` count against a quota (and may be answered 429)."""
    exempt = path in EXEMPT_PATHS or path.startswith(EXEMPT_PREFIXES)
    return not exempt and method in READ_METHODS | MUTATION_METHODS


UPLOAD_PATH = "/api/samples/upload"
ANONYMOUS_SIGN_UP_PATH = "/api/auth/anonymous"
# Set on a socket handshake counted here: the session's first namespace connect is not counted again.
SOCKET_SESSION_COUNTED = web.RequestKey("socket_session_counted", bool)


def is_socket_handshake(method: str, path: str, query: Any) -> bool:
    """A request opening a new Engine.IO session (Engine.IO names an existing one with ``sid``)."""
    return method == "GET" and path.startswith(EXEMPT_PREFIXES) and "sid" not in query


@dataclass(frozen=True)
class Quotas:
    get: Quota
    mutations: Quota
    uploads: Quota
    anonymous_accounts: Quota
    socket_connects: Quota

    @classmethod
    def from_settings(cls, settings: Settings) -> Quotas:
        return cls(
            get=Quota("get", settings.rate_limit_get_per_hour, HOUR),
            mutations=Quota("mutations", settings.rate_limit_mutations_per_hour, HOUR),
            uploads=Quota("uploads", settings.rate_limit_uploads_per_hour, HOUR),
            anonymous_accounts=Quota(
                "anonymous-accounts", settings.rate_limit_anonymous_accounts_per_ip_per_hour, HOUR
            ),
            socket_connects=Quota(
                "socket-connects", settings.rate_limit_socket_connects_per_ip_per_minute, MINUTE
            ),
        )


class RateLimiter:
    """Decides, counts and reports. One per app, on ``RATE_LIMITER``."""

    def __init__(self, counters: Counters, settings: Settings) -> None:
        self.refusals: Counter[str] = Counter()  # refused hits by quota name (metrics)
        self.counters = counters
        self.quotas = Quotas.from_settings(settings)
        self.trusted_proxies = trusted_networks(settings.trusted_proxies)

    def client_ip(self, request: web.BaseRequest) -> str:
        return request_ip(request, self.trusted_proxies)

    def quotas_for(self, method: str, path: str) -> list[Quota]:
        """The quotas a request counts against, besides per-IP ones ([] = not limited)."""
        if not is_rate_limited(method, path):
            return []  # probes, the OpenAPI document, sockets; OPTIONS (CORS preflight)
        if method in READ_METHODS:
            return [self.quotas.get]
        if method == "POST" and path == UPLOAD_PATH:
            return [self.quotas.mutations, self.quotas.uploads]
        return [self.quotas.mutations]

    async def _caller_key(self, request: web.Request) -> str:
        try:
            caller = await optional_caller(request)
        except (InvalidToken, DomainError, FirebaseUnavailable):
            caller = None  # the handler reports the bad token; count the attempt per IP
        if caller is not None:
            return f"user:{caller.user_id}"
        return f"ip:{self.client_ip(request)}"

    async def _hit_all(self, hits: list[tuple[Quota, str]]) -> Decision | None:
        """Count every hit; the refused (or most nearly exhausted) decision, None if unavailable."""
        decisions = []
        for quota, key in hits:
            try:
                decision = await self.counters.hit(quota, key)
            except CountersUnavailable:
                return None  # fail open: logged by the counters, shown in /readyz
            if not decision.allowed:
                self.refusals[quota.name] += 1  # /metrics
            decisions.append(decision)
        refused = [d for d in decisions if not d.allowed]
        if refused:
            return max(refused, key=lambda d: d.reset_after)
        return min(decisions, key=lambda d: (d.remaining / d.limit, d.remaining))

    async def check(self, request: web.Request) -> Decision | None:
        """Count ``request``; None when it is not limited (or the counters are down)."""
        if is_socket_handshake(request.method, request.path, request.query):
            request[SOCKET_SESSION_COUNTED] = True
            return await self._hit_all([(self.quotas.socket_connects, f"ip:{self.client_ip(request)}")])
        quotas = self.quotas_for(request.method, request.path)
        if not quotas:
            return None
        key = await self._caller_key(request)
        hits = [(quota, key) for quota in quotas]
        if request.method == "POST" and request.path == ANONYMOUS_SIGN_UP_PATH:
            hits.append((self.quotas.anonymous_accounts, f"ip:{self.client_ip(request)}"))
        return await self._hit_all(hits)

    async def socket_connect_refusal(self, environ: dict[str, Any]) -> str | None:
        """Why a socket connection attempt (a namespace connect) is refused (too many from its
        IP), or None. A session's first was counted with its handshake (:meth:`check`)."""
        request = environ.get("aiohttp.request")
        if request is not None and request.get(SOCKET_SESSION_COUNTED):
            request[SOCKET_SESSION_COUNTED] = False
            return None
        peer = request.remote if request is not None else environ.get("REMOTE_ADDR")
        forwarded = request.headers.getall("X-Forwarded-For", ()) if request is not None else ()
        ip = client_ip(peer, forwarded, self.trusted_proxies)
        decision = await self._hit_all([(self.quotas.socket_connects, f"ip:{ip}")])
        if decision is None or decision.allowed:
            return None
        return f"too many connection attempts from your address; retry in {decision.reset_after} s"


RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _headers(decision: Decision) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(decision.reset_after),
    }


def _refusal(decision: Decision) -> RateLimited:
    retry_after = max(1, decision.reset_after)
    return RateLimited(
        f"rate limit reached ({decision.limit} per window); retry in {retry_after} s",
        retry_after=retry_after,
        headers=_headers(decision),
    )


@web.middleware
async def rate_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Runs outside the error middleware, so that error responses carry the headers too."""
    limiter = request.app[RATE_LIMITER]
    decision = await limiter.check(request)
    if decision is not None and not decision.allowed:
        exc = _refusal(decision)
        return error_response(exc.status, exc.code, exc.message, headers=exc.headers)
    response = await handler(request)
    if decision is not None and not response.prepared:
        response.headers.update(_headers(decision))
    return response
