"""The files the public pages link to: their scripts (``/static/...``) and their link-preview
picture (``/preview/<token>.png``, the ``og:image``).

Scripts are served under immutable hashed URLs (``pages.assets``): a browser keeps them for a
year and a release changes their URLs. The preview is drawn by ``pages.preview`` in the CPU
worker process (50-200 ms of Pillow), answered with a strong ETag computed from what it shows
before drawing (a revalidation that matches is a 304 without drawing), and kept in the pages'
byte-bounded cache by that ETag; an edit changes the ETag, so the next request draws anew.
"""

from __future__ import annotations

from aiohttp import web

from music.kinds import DocKind
from pages.assets import CONTENT_TYPES, IMMUTABLE, page_assets
from pages.preview import preview_etag, render_preview
from rest.context import context
from rest.cpu_worker import CPU_WORKER
from rest.page_cache import PAGE_CACHE
from rest.pages import COMMON_HEADERS, etag_matches, owner_name, song_loop_names
from rest.samples import loop_samples
from rest.sharing import live_public, open_share
from storage.errors import NotFound
from storage.models import Loop

_PREVIEW_HEADERS = {**COMMON_HEADERS, "Content-Security-Policy": "default-src 'none'"}


async def static_file(request: web.Request) -> web.StreamResponse:
    """``GET /static/{group}/{digest}/{file}``: a page script, immutable (a stale digest is 404)."""
    info = request.match_info
    path = page_assets().find(info["group"], info["digest"], info["file"])
    if path is None:
        raise NotFound("no such file (or not this version of it)")
    return web.FileResponse(
        path,
        headers={
            "Content-Type": CONTENT_TYPES.get(path.suffix, "application/octet-stream"),
            "Cache-Control": IMMUTABLE,
            "X-Content-Type-Options": "nosniff",
            # The embed loads these from another site's iframe: same origin as the embed itself.
            "Cross-Origin-Resource-Policy": "same-site",
        },
    )


async def preview_image(request: web.Request) -> web.Response:
    """``GET /preview/{token}.png``: the shared loop's or song's 1200 x 630 PNG picture."""
    ctx = context(request)
    headers = dict(_PREVIEW_HEADERS)
    resource = await open_share(ctx, request.match_info["token"])  # 404 / 410 as JSON errors
    data = await live_public(ctx, resource.kind, resource.row)
    title, author = str(data.get("name") or "Untitled"), owner_name(resource)
    loop_names: dict[str, str] = {}
    sample_names: dict[str, str] = {}
    if resource.kind.doc_kind is DocKind.LOOP:
        assert isinstance(resource.row, Loop)
        sample_names = {
            s["id"]: s["name"] for s in await loop_samples(request, resource.row, data) if s.get("name")
        }
    else:
        loop_names = await song_loop_names(ctx, data)
    etag = preview_etag(data, title=title, author=author, loop_names=loop_names, sample_names=sample_names)
    # A chat app fetches it once; browsers revalidate (an edit must show on the next share).
    headers.update({"ETag": etag, "Cache-Control": "public, max-age=0, must-revalidate"})
    cache = request.app[PAGE_CACHE]
    if etag_matches(request, etag):
        cache.revalidated()
        return web.Response(status=304, headers=headers)
    png = cache.get(etag)
    if png is None:
        png = await request.app[CPU_WORKER].run(
            render_preview, data, title=title, author=author, loop_names=loop_names, sample_names=sample_names
        )
        cache.put(etag, png)
    return web.Response(body=png, content_type="image/png", headers=headers)
