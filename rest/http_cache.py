"""HTTP caching of API reads: a strong ETag on every successful read, 304 on a match.

- A read anyone may make (``GET`` without ``Authorization``: public loops and songs, shared
  links, profiles) is ``public``: browsers revalidate every time (``max-age=0``), a CDN may
  answer from its copy for ``s-maxage`` and serve it stale for ``stale-while-revalidate``
  more seconds while it revalidates. This server itself never answers from stale data.
- A read made with a token is ``private, no-cache``: never stored by shared caches, and the
  browser revalidates each use (cheap: 304 without a body).
- Everything else (writes, errors) is ``no-store``.

A handler that sets ``Cache-Control`` itself keeps its own. The ETag is a hash of the body
as sent, so it is strong (byte-for-byte) and identical on every instance.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web

PUBLIC = "public, max-age=0, s-maxage=10, stale-while-revalidate=60"
PRIVATE = "private, no-cache"
NO_STORE = "no-store"
READS = frozenset({"GET", "HEAD"})
# Headers of a 200 that describe the body itself; a 304 leaves them out.
BODY_HEADERS = frozenset({hdrs.CONTENT_TYPE, hdrs.CONTENT_LENGTH, hdrs.CONTENT_ENCODING})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def body_etag(body: bytes) -> str:
    return hashlib.blake2b(body, digest_size=16).hexdigest()


def _add_vary(response: web.StreamResponse, header: str) -> None:
    present = [v.strip().lower() for v in response.headers.get(hdrs.VARY, "").split(",") if v.strip()]
    if header.lower() not in present:
        response.headers[hdrs.VARY] = ", ".join([*filter(None, [response.headers.get(hdrs.VARY)]), header])


def _matches(request: web.Request, etag: str) -> bool:
    # If-None-Match uses the weak comparison (RFC 9110 13.1.2): W/"x" matches "x".
    candidates = request.if_none_match
    return candidates is not None and any(c.value in ("*", etag) for c in candidates)


@web.middleware
async def http_cache_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if not request.path.startswith("/api/") or response.prepared:
        return response
    body = response.body if isinstance(response, web.Response) else None
    if request.method not in READS or response.status != 200 or not isinstance(body, bytes):
        response.headers.setdefault(hdrs.CACHE_CONTROL, NO_STORE)
        return response
    response.headers.setdefault(
        hdrs.CACHE_CONTROL, PRIVATE if hdrs.AUTHORIZATION in request.headers else PUBLIC
    )
    _add_vary(response, hdrs.AUTHORIZATION)
    # A handler's own ETag stands (the binary document API's names the state vector).
    etag = response.etag.value if response.etag is not None else body_etag(body)
    response.etag = etag
    if not _matches(request, etag):
        return response
    headers = {k: v for k, v in response.headers.items() if k not in BODY_HEADERS}
    return web.Response(status=304, headers=headers)
