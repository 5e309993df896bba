"""Public HTML pages of shared documents: ``/loop/<token>``, ``/song/<token>``, ``/embed/<token>``.

Rendered with ``html.escape`` on every piece of user content (no template engine needed for
three small pages). The full pages carry OpenGraph / Twitter meta tags for link previews and
refuse to be framed; only ``/embed/<token>`` may sit in another site's ``<iframe>``. Pages
answer with an ``ETag`` and ``Cache-Control: no-cache``: browsers and proxies keep a copy but
revalidate it, so a revoked link stops working at once. ``Referrer-Policy: no-referrer``
keeps the token (it is in the URL) from leaking to the sites a page links to.

A page costs one render per version: its ETag comes from what it shows, before rendering
(:func:`page_etag`), a matching revalidation is a 304 without rendering, and rendered pages
are kept by ETag in a cache bounded by bytes (``rest.page_cache``, ``PAGE_CACHE_BYTES``).
"""

from __future__ import annotations

import hashlib
from html import escape
from typing import Any
from urllib.parse import urlsplit

import pydantic_core
from aiohttp import web

from pages import timing
from pages.assets import page_assets
from pages.markup import grid_svg, lane_labels, loop_lanes, timeline_svg
from pages.preview import HEIGHT as PREVIEW_HEIGHT
from pages.preview import WIDTH as PREVIEW_WIDTH
from rest.context import RestContext, context
from rest.page_cache import PAGE_CACHE
from rest.sharing import SharedResource, count_view, live_public, open_share, public_timeline_loops
from settings import Settings
from storage.sharing import ShareExpired, ShareHidden, ShareNotFound, ShareRevoked

SITE_NAME = "Music Playground"
RENDERING = "4"  # the markup's version, part of every page's ETag: change it with the markup
DATA_ELEMENT_ID = "page-data"


def _csp(settings: Settings, *, frame_ancestors: str) -> str:
    """Scripts and styles from this server only (``blob:``: Tone.js hands its AudioWorklet
    modules to the browser as blob URLs made from its own code); samples may come from the
    blob store's origin."""
    connect = " ".join(["'self'", *sample_origins(settings)])
    return (
        "default-src 'none'; script-src 'self' blob:; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; "
        f"connect-src {connect}; media-src 'self' blob: data:; base-uri 'none'; form-action 'none'; "
        f"frame-ancestors {frame_ancestors}"
    )


def sample_origins(settings: Settings) -> list[str]:
    """Where uploaded samples' ``fileUrl``s point, other than this server: the S3 / R2 endpoint
    (path and virtual-hosted addressing) or its public base URL, or AWS when no endpoint is set."""
    if not settings.s3_bucket:
        return []
    origins = []
    for url in (settings.s3_public_base_url, settings.s3_endpoint_url):
        if url:
            parsed = urlsplit(url)
            origins += [f"{parsed.scheme}://{parsed.netloc}", f"{parsed.scheme}://*.{parsed.netloc}"]
    return origins or ["https://*.amazonaws.com"]


def _frame_headers(settings: Settings, *, embed: bool) -> dict[str, str]:
    if embed:
        return {"Content-Security-Policy": _csp(settings, frame_ancestors="*")}
    return {"Content-Security-Policy": _csp(settings, frame_ancestors="'none'"), "X-Frame-Options": "DENY"}


COMMON_HEADERS = {"Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"}

# Light by default, dark when the reader's system is; the grid's colours are the sounds'.
_STYLE = """
:root{color-scheme:light dark;--bg:#f7f7fb;--fg:#14141f;--muted:#55556a;--panel:#ffffff;--cell:#e4e4ee;
--line:#9a9ab0;--beat:#cfcfdc;--accent:#ffd11a;--chord:#b8a8ff;--head:#0077cc}
@media (prefers-color-scheme:dark){:root{--bg:#14141f;--fg:#f2f2f7;--muted:#b8b8c8;--panel:#1c1c2a;
--cell:#2a2a3a;--line:#6a6a82;--beat:#34344a;--chord:#7b61ff;--head:#7bdcff}}
body{margin:0;font:16px/1.4 system-ui,sans-serif;background:var(--bg);color:var(--fg)}
main{max-width:1100px;margin:0 auto;padding:16px}
h1{margin:0 0 4px;font-size:26px;overflow-wrap:anywhere}
.by{margin:0 0 12px;color:var(--muted)}
dl{display:flex;flex-wrap:wrap;gap:8px 24px;margin:0 0 12px}
dt{color:var(--muted);font-size:13px}dd{margin:0;font-weight:600}
.controls{display:flex;align-items:center;gap:12px;flex-wrap:wrap;margin:0 0 12px}
#play{font:inherit;font-weight:700;background:var(--accent);color:#14141f;border:0;border-radius:8px;
padding:8px 20px;min-width:96px;cursor:pointer}#play:disabled{opacity:.5;cursor:wait}
#play:focus-visible{outline:3px solid var(--head);outline-offset:2px}
#status{color:var(--muted);font-size:14px}#status.gone{color:#d33;font-weight:700}
.sheet{display:flex;background:var(--panel);border-radius:8px;padding:4px;margin:0 0 12px}
.lanes{list-style:none;margin:0;padding:0 6px 0 2px;flex:none;font-size:13px}
.lanes li{height:22px;line-height:22px;white-space:nowrap;max-width:9em;
overflow:hidden;text-overflow:ellipsis}
.lanes li:not(.chord-label){border-left:4px solid var(--lane);padding-left:4px}
.lanes .chord-label{color:var(--muted);padding-left:8px}
.lanes li+li{margin-top:0}
.scroll{overflow-x:auto;flex:1;min-width:0}
svg{display:block}svg .bg{fill:var(--panel)}svg .empty{fill:var(--cell)}
svg .bar{stroke:var(--line);stroke-width:2}svg .beat{stroke:var(--beat);stroke-width:1}
svg .steps rect{height:20px;rx:2px}svg .steps rect:not([width]){width:14px}
svg .chord rect{fill:var(--chord)}svg .chord text{font-size:12px;fill:var(--fg);font-weight:600}
svg #playhead{fill:var(--head);fill-opacity:.35}
svg.timeline text{font-size:13px;fill:#14141f;font-weight:600}
svg.timeline .ruler{fill:var(--muted);font-size:11px;font-weight:400}
svg.timeline #playhead{fill-opacity:1}
svg.timeline .block.now rect{stroke:var(--fg);stroke-width:3}
ol.chords{display:flex;flex-wrap:wrap;gap:6px;list-style:none;padding:0;margin:0 0 12px}
ol.chords li{background:var(--cell);border-radius:6px;padding:2px 8px;font-size:14px}
a.open{display:inline-block;background:var(--accent);color:#14141f;border-radius:8px;padding:8px 16px;
font-weight:700;text-decoration:none}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip-path:inset(50%);white-space:nowrap}
.embed main{padding:8px}.embed h1{font-size:18px}.embed .by{margin-bottom:6px}.embed dl{display:none}
@media (max-width:480px){main{padding:10px}h1{font-size:21px}.lanes li{max-width:5.5em}}
"""


def owner_name(resource: SharedResource) -> str:
    return (resource.owner.display_name if resource.owner else None) or "a Music Playground user"


def _facts(resource: SharedResource, data: dict[str, Any]) -> tuple[list[tuple[str, str]], str]:
    """The page's key facts and a one-line description (for meta tags)."""
    owner = owner_name(resource)
    if resource.kind.name == "loop":
        bars = int(data.get("length") or 0)
        chords = " \u2013 ".join(str(c.get("chord", "")) for c in (data.get("chordProgression") or [])[:16])
        facts = [("Tempo", f"{data['bpm']} BPM" if data.get("bpm") else "—"), ("Length", f"{bars} bars")]
        description = f"A {bars}-bar loop" + (f" at {data['bpm']} BPM" if data.get("bpm") else "")
        description += f" by {owner}" + (f": {chords}" if chords else "")
    else:
        bars = int(data.get("totalBars") or 0)
        facts = [
            ("Tempo", f"{data.get('bpm')} BPM"),
            ("Time", str(data.get("timeSignature", ""))),
            ("Length", f"{bars} bars"),
        ]
        description = f"A {bars}-bar song at {data.get('bpm')} BPM by {owner}"
    facts.append(("Views", str(int(data.get("viewCount") or 0))))
    return facts, description


def _script_json(value: Any) -> str:
    """JSON safe inside ``<script type="application/json">`` (no ``</script>``, no ``<!--``)."""
    return pydantic_core.to_json(value).decode().replace("<", "\\u003c").replace("&", "\\u0026")


def _page_data(resource: SharedResource, data: dict[str, Any], *, live_url: str | None) -> dict[str, Any]:
    """What the page's script needs: the content to play and how to follow it live."""
    content_fields = (
        *("name", "bpm", "length", "color", "chordProgression", "iconSequence"),
        *("timeline", "totalBars", "timeSignature"),
    )
    return {
        "kind": resource.kind.name,
        "id": str(resource.row.id),
        "token": resource.link.share_token,
        "live": live_url,
        "content": {k: data[k] for k in content_fields if k in data},
    }


def render_page(
    ctx: RestContext,
    resource: SharedResource,
    data: dict[str, Any],
    *,
    embed: bool,
    loop_names: dict[str, str] | None = None,
) -> str:
    token = resource.link.share_token
    kind = resource.kind.name
    name = str(data.get("name") or "Untitled")
    owner = owner_name(resource)
    facts, description = _facts(resource, data)
    page_url = f"{ctx.settings.public_base_url}/{kind}/{token}"
    preview_url = f"{ctx.settings.public_base_url}/preview/{token}.png"
    composer_url = f"{ctx.settings.composer_url}/?share={token}"
    assets = page_assets()
    chords = ""
    if kind == "loop":
        lanes = loop_lanes(data)
        picture = (
            f'<div class="sheet" role="img" aria-label="step grid: {len(lanes)} sounds, '
            f'{timing.loop_bars(data)} bars">{lane_labels(lanes)}'
            f'<div class="scroll">{grid_svg(data, lanes)}</div></div>'
        )
        if data.get("chordProgression"):
            items = "".join(f"<li>{escape(s.name)}</li>" for s in timing.chord_spans(data))
            chords = f'<ol class="chords" aria-label="chord progression">{items}</ol>'
    else:
        blocks = len(data.get("timeline") or [])
        picture = (
            f'<div class="sheet" role="img" aria-label="timeline: {blocks} blocks">'
            f'<div class="scroll">{timeline_svg(data, loop_names or {})}</div></div>'
        )
    meta = [
        ("name", "description", description),
        ("property", "og:site_name", SITE_NAME),
        ("property", "og:type", "music.song"),
        ("property", "og:title", name),
        ("property", "og:description", description),
        ("property", "og:url", page_url),
        ("property", "og:image", preview_url),
        ("property", "og:image:type", "image/png"),
        ("property", "og:image:width", str(PREVIEW_WIDTH)),
        ("property", "og:image:height", str(PREVIEW_HEIGHT)),
        ("property", "og:image:alt", f"{name} by {owner}"),
        ("name", "twitter:card", "summary_large_image"),
        ("name", "twitter:title", name),
        ("name", "twitter:description", description),
        ("name", "twitter:image", preview_url),
    ]
    head_meta = "".join(f'<meta {attr}="{key}" content="{escape(value)}">' for attr, key, value in meta)
    fact_list = "".join(f"<div><dt>{escape(k)}</dt><dd>{escape(v)}</dd></div>" for k, v in facts)
    target = ' target="_blank" rel="noopener"' if embed else ""
    live_url = assets.live.url("kit.js") if assets.live else None
    scripts = ""
    if assets.player and assets.vendor:
        scripts = (
            f'<script defer src="{assets.vendor.url("Tone.js")}"></script>'
            f'<script defer src="{assets.vendor.url("tonal.min.js")}"></script>'
            f'<script type="module" src="{assets.player.url("page.js")}"></script>'
        )
    page_data = _script_json(_page_data(resource, data, live_url=live_url))
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(name)} &middot; {SITE_NAME}</title>{head_meta}"
        f'<link rel="canonical" href="{escape(page_url)}"><style>{_STYLE}</style>{scripts}</head>'
        f'<body class="{"embed" if embed else "page"}"><main>'
        f'<h1>{escape(name)}</h1><p class="by">by {escape(owner)}</p><dl>{fact_list}</dl>'
        '<p class="controls"><button id="play" type="button" aria-pressed="false" disabled '
        f'aria-keyshortcuts="Space">Play</button><span id="status" role="status" aria-live="polite"></span>'
        f'<span class="sr" id="position" aria-live="off"></span></p>{picture}{chords}'
        f'<p><a class="open" href="{escape(composer_url)}"{target}>Open in {SITE_NAME}</a></p>'
        f'</main><script type="application/json" id="{DATA_ELEMENT_ID}">{page_data}</script></body></html>'
    )


def render_problem(status: int, title: str, message: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="robots" content="noindex"><title>{escape(title)} &middot; {SITE_NAME}</title>'
        f"<style>{_STYLE}</style></head><body><main>"
        f'<h1>{escape(title)}</h1><p class="by">{escape(message)}</p>'
        f'<p class="status">HTTP {status}</p></main></body></html>'
    )


_PROBLEMS = {
    "share_expired": (
        "This link has expired",
        "The owner shared it for a limited time. Ask them for a new link.",
    ),
    "share_revoked": ("This link was turned off", "The owner stopped sharing it. Ask them for a new link."),
    "share_unavailable": ("This piece is not available", "It was removed by the site's moderators."),
}


def _html(body: str | bytes, *, status: int, headers: dict[str, str]) -> web.Response:
    data = body.encode() if isinstance(body, str) else body
    return web.Response(body=data, status=status, content_type="text/html", charset="utf-8", headers=headers)


def etag_matches(request: web.Request, etag: str) -> bool:
    header = request.headers.get("If-None-Match", "")
    candidates = {part.strip().removeprefix("W/") for part in header.split(",")}
    return etag in candidates or "*" in candidates


def page_etag(
    ctx: RestContext,
    resource: SharedResource,
    data: dict[str, Any],
    *,
    embed: bool,
    loop_names: dict[str, str] | None = None,
) -> str:
    """The ETag of a page, from everything :func:`render_page` shows, without rendering it:
    the same page has the same ETag on every instance, and any change to it a new one."""
    owner = resource.owner.display_name if resource.owner else None
    settings = ctx.settings
    assets = page_assets()
    versions = [group.digest if group else None for group in (assets.player, assets.vendor, assets.live)]
    shown = [
        RENDERING,
        resource.kind.name,
        embed,
        resource.link.share_token,
        owner,
        data,
        loop_names,
        versions,
    ]
    shown += [settings.public_base_url, settings.composer_url, sample_origins(settings)]
    return '"' + hashlib.blake2b(pydantic_core.to_json(shown), digest_size=16).hexdigest() + '"'


async def song_loop_names(ctx: RestContext, data: dict[str, Any]) -> dict[str, str]:
    """The names of the song's loops anyone may read (a private loop's block says "Loop")."""
    return {str(row.id): row.name for row in await public_timeline_loops(ctx, data.get("timeline") or [])}


async def open_page(
    request: web.Request, *, kind: str | None, headers: dict[str, str]
) -> SharedResource | web.Response:
    """The shared document, or the HTML problem page to answer instead."""
    ctx = context(request)
    not_here = render_problem(
        404, "Nothing here", "This share link does not exist (or the piece was deleted)."
    )
    try:
        resource = await open_share(ctx, request.match_info["token"])
    except (ShareExpired, ShareRevoked, ShareHidden) as exc:
        title, message = _PROBLEMS[exc.code]
        return _html(render_problem(410, title, message), status=410, headers=headers)
    except ShareNotFound:
        return _html(not_here, status=404, headers=headers)
    if kind is not None and resource.kind.name != kind:
        return _html(not_here, status=404, headers=headers)
    return resource


async def _serve(request: web.Request, *, kind: str | None, embed: bool) -> web.Response:
    ctx = context(request)
    headers = {**COMMON_HEADERS, **_frame_headers(ctx.settings, embed=embed)}
    resource = await open_page(request, kind=kind, headers=headers)
    if isinstance(resource, web.Response):
        return resource
    data = await live_public(ctx, resource.kind, resource.row)
    count_view(request, resource.kind, resource.row, None)
    loop_names = await song_loop_names(ctx, data) if resource.kind.name == "song" else None
    etag = page_etag(ctx, resource, data, embed=embed, loop_names=loop_names)
    headers.update({"ETag": etag, "Cache-Control": "no-cache"})
    pages = request.app[PAGE_CACHE]
    if etag_matches(request, etag):
        pages.revalidated()
        return web.Response(status=304, headers=headers)
    page = pages.get(etag)
    if page is None:
        page = render_page(ctx, resource, data, embed=embed, loop_names=loop_names).encode()
        pages.put(etag, page)
    return _html(page, status=200, headers=headers)


async def loop_page(request: web.Request) -> web.Response:
    return await _serve(request, kind="loop", embed=False)


async def song_page(request: web.Request) -> web.Response:
    return await _serve(request, kind="song", embed=False)


async def embed_page(request: web.Request) -> web.Response:
    return await _serve(request, kind=None, embed=True)
