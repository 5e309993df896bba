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
from collections.abc import Iterable
from html import escape
from typing import Any

import pydantic_core
from aiohttp import web

from rest.context import RestContext, context
from rest.page_cache import PAGE_CACHE
from rest.sharing import SharedResource, count_view, live_public, open_share
from storage.sharing import ShareExpired, ShareHidden, ShareNotFound, ShareRevoked

SITE_NAME = "Music Playground"
RENDERING = "2"  # the markup's version, part of every page's ETag: change it with the markup
CELL_WIDTH, CELL_HEIGHT, CELL_GAP = 14, 20, 2
STEPS_PER_BAR = 16
MAX_GRID_COLUMNS = 64
TIMELINE_WIDTH = 960
EMPTY_CELL = "#2a2a3a"

_FRAME_DENIED = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
}
_FRAME_ALLOWED = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
        "form-action 'none'; frame-ancestors *"
    ),
}
_COMMON = {"Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"}

_STYLE = """
body{margin:0;font:16px/1.4 system-ui,sans-serif;background:#14141f;color:#f2f2f7}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{margin:0 0 4px;font-size:28px;overflow-wrap:anywhere}
.by{margin:0 0 16px;color:#b8b8c8}
dl{display:flex;gap:24px;margin:0 0 16px}dt{color:#b8b8c8;font-size:13px}dd{margin:0;font-weight:600}
ol.chords{display:flex;flex-wrap:wrap;gap:8px;list-style:none;padding:0;margin:0 0 16px}
ol.chords li{background:#2a2a3a;border-radius:6px;padding:4px 10px}
svg{display:block;max-width:100%;height:auto;margin:0 0 16px}
a.open{display:inline-block;background:#ffd11a;color:#14141f;border-radius:8px;padding:8px 16px;
font-weight:700;text-decoration:none}
.embed main{padding:12px}.embed h1{font-size:20px}
"""


def _hue(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:4], 16) % 360


def _safe_color(value: Any, fallback: str) -> str:
    text = str(value or "")
    if len(text) == 7 and text.startswith("#") and all(c in "0123456789abcdefABCDEF" for c in text[1:]):
        return text
    return fallback


def grid_layout(data: dict[str, Any]) -> tuple[int, list[str], list[tuple[int, int, str]]]:
    """``(columns, lane labels, cells)`` of a loop's step grid; a cell is (column, lane, fill).

    A step with a ``row`` sits in that row's lane; one without sits in its sound's lane.
    """
    steps = data.get("iconSequence") or []
    columns = min(MAX_GRID_COLUMNS, int(data.get("length") or 1) * STEPS_PER_BAR)
    columns = max([columns] + [int(s["step"]) + 1 for s in steps])
    lanes: dict[tuple[str, Any], int] = {}
    labels: list[str] = []
    cells: list[tuple[int, int, str]] = []
    for step in sorted(steps, key=lambda s: (s.get("row") is None, s.get("row") or 0, s["soundId"])):
        lane_key = ("row", step["row"]) if step.get("row") is not None else ("sound", step["soundId"])
        if lane_key not in lanes:
            lanes[lane_key] = len(lanes)
            labels.append(step["soundId"])
        velocity = float(step.get("velocity", 0.8))
        fill = f"hsl({_hue(step['soundId'])} 80% {40 + round(velocity * 25)}%)"
        cells.append((int(step["step"]), lanes[lane_key], fill))
    return columns, labels, cells


def grid_svg(data: dict[str, Any], *, scale: float = 1.0) -> str:
    """The step grid as inline SVG, drawn in unscaled units (``scale`` sizes the element).

    Compact, as a loop at its bounds has 2,048 steps over up to 2,048 lanes: the empty cells
    are one rectangle filled with a pattern of one cell, and each step is one ``rect.step``
    with integer coordinates (a 2,048-step page is ~250 KB, where a rectangle per empty cell
    made it 9 MB)."""
    columns, labels, cells = grid_layout(data)
    lanes = max(1, len(labels))
    pitch_x, pitch_y = CELL_WIDTH + CELL_GAP, CELL_HEIGHT + CELL_GAP
    width, height = columns * pitch_x + CELL_GAP, lanes * pitch_y + CELL_GAP
    parts = [
        f'<svg class="grid" xmlns="http://www.w3.org/2000/svg" width="{width * scale:g}" '
        f'height="{height * scale:g}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="step grid: {len(cells)} steps" data-columns="{columns}" data-lanes="{lanes}">'
        f'<defs><pattern id="cell" x="{CELL_GAP}" y="{CELL_GAP}" width="{pitch_x}" height="{pitch_y}" '
        f'patternUnits="userSpaceOnUse"><rect width="{CELL_WIDTH}" height="{CELL_HEIGHT}" '
        f'fill="{EMPTY_CELL}"/></pattern></defs>'
        f'<rect width="{width}" height="{height}" fill="#1c1c2a"/>'
        f'<rect x="{CELL_GAP}" y="{CELL_GAP}" width="{width - CELL_GAP}" height="{height - CELL_GAP}" '
        'fill="url(#cell)"/>'
    ]
    parts.extend(
        f'<rect class="step" x="{CELL_GAP + column * pitch_x}" y="{CELL_GAP + lane * pitch_y}" '
        f'width="{CELL_WIDTH}" height="{CELL_HEIGHT}" rx="2" fill="{fill}"/>'
        for column, lane, fill in cells
    )
    parts.append("</svg>")
    return "".join(parts)


def timeline_lanes(blocks: Iterable[dict[str, Any]]) -> list[tuple[dict[str, Any], int]]:
    """Each timeline block with the first lane where it overlaps no other block."""
    lane_ends: list[int] = []
    placed = []
    for block in sorted(blocks, key=lambda b: (int(b["startBar"]), str(b["id"]))):
        start, end = int(block["startBar"]), int(block["startBar"]) + int(block["duration"])
        lane = next((i for i, lane_end in enumerate(lane_ends) if lane_end <= start), len(lane_ends))
        if lane == len(lane_ends):
            lane_ends.append(end)
        else:
            lane_ends[lane] = end
        placed.append((block, lane))
    return placed


def timeline_svg(data: dict[str, Any], *, width: int = TIMELINE_WIDTH) -> str:
    placed = timeline_lanes(data.get("timeline") or [])
    total = max(
        [int(data.get("totalBars") or 0), 1] + [int(b["startBar"]) + int(b["duration"]) for b, _ in placed]
    )
    lanes = max(1, 1 + max((lane for _, lane in placed), default=0))
    bar, lane_h, gap = width / total, CELL_HEIGHT * 1.5, CELL_GAP
    height = lanes * (lane_h + gap) + gap
    parts = [
        f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height:g}" '
        f'viewBox="0 0 {width} {height:g}" role="img" aria-label="timeline: {len(placed)} blocks" '
        f'data-total-bars="{total}">',
        f'<rect width="{width}" height="{height:g}" fill="#1c1c2a"/>',
    ]
    for block, lane in placed:
        x, y = int(block["startBar"]) * bar, gap + lane * (lane_h + gap)
        fill = _safe_color(block.get("color"), f"hsl({_hue(str(block['loopId']))} 70% 55%)")
        parts.append(
            f'<rect class="block" x="{x:g}" y="{y:g}" width="{max(1.0, int(block["duration"]) * bar - 1):g}" '
            f'height="{lane_h:g}" rx="3" fill="{fill}" data-block="{escape(str(block["id"]))}">'
            f"<title>{escape(str(block['loopId']))}: bars {int(block['startBar']) + 1}"
            f" to {int(block['startBar']) + int(block['duration'])}</title></rect>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _facts(resource: SharedResource, data: dict[str, Any]) -> tuple[list[tuple[str, str]], str]:
    """The page's key facts and a one-line description (for meta tags)."""
    owner = (resource.owner.display_name if resource.owner else None) or "a Music Playground user"
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


def render_page(ctx: RestContext, resource: SharedResource, data: dict[str, Any], *, embed: bool) -> str:
    token = resource.link.share_token
    name = str(data.get("name") or "Untitled")
    owner = (resource.owner.display_name if resource.owner else None) or "a Music Playground user"
    facts, description = _facts(resource, data)
    page_url = f"{ctx.settings.public_base_url}/{resource.kind.name}/{token}"
    composer_url = f"{ctx.settings.composer_url}/?share={token}"
    picture = (
        grid_svg(data, scale=0.7 if embed else 1.0) if resource.kind.name == "loop" else timeline_svg(data)
    )
    chords = ""
    if resource.kind.name == "loop" and data.get("chordProgression"):
        items = "".join(f"<li>{escape(str(c.get('chord', '')))}</li>" for c in data["chordProgression"])
        chords = f'<ol class="chords" aria-label="chord progression">{items}</ol>'
    meta = [
        ("name", "description", description),
        ("property", "og:site_name", SITE_NAME),
        ("property", "og:type", "music.song"),
        ("property", "og:title", name),
        ("property", "og:description", description),
        ("property", "og:url", page_url),
        ("name", "twitter:card", "summary"),
        ("name", "twitter:title", name),
        ("name", "twitter:description", description),
    ]
    head_meta = "".join(f'<meta {attr}="{key}" content="{escape(value)}">' for attr, key, value in meta)
    fact_list = "".join(f"<div><dt>{escape(k)}</dt><dd>{escape(v)}</dd></div>" for k, v in facts)
    target = ' target="_blank" rel="noopener"' if embed else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(name)} &middot; {SITE_NAME}</title>{head_meta}"
        f'<link rel="canonical" href="{escape(page_url)}"><style>{_STYLE}</style></head>'
        f'<body class="{"embed" if embed else "page"}"><main>'
        f'<h1>{escape(name)}</h1><p class="by">by {escape(owner)}</p><dl>{fact_list}</dl>{chords}{picture}'
        f'<p><a class="open" href="{escape(composer_url)}"{target}>Open in {SITE_NAME}</a></p>'
        "</main></body></html>"
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


def _etag_matches(request: web.Request, etag: str) -> bool:
    header = request.headers.get("If-None-Match", "")
    candidates = {part.strip().removeprefix("W/") for part in header.split(",")}
    return etag in candidates or "*" in candidates


def page_etag(ctx: RestContext, resource: SharedResource, data: dict[str, Any], *, embed: bool) -> str:
    """The ETag of a page, from everything :func:`render_page` shows, without rendering it:
    the same page has the same ETag on every instance, and any change to it a new one."""
    owner = resource.owner.display_name if resource.owner else None
    settings = ctx.settings
    shown = [RENDERING, resource.kind.name, embed, resource.link.share_token, owner, data]
    shown += [settings.public_base_url, settings.composer_url]
    return '"' + hashlib.blake2b(pydantic_core.to_json(shown), digest_size=16).hexdigest() + '"'


async def _serve(request: web.Request, *, kind: str | None, embed: bool) -> web.Response:
    ctx = context(request)
    headers = {**_COMMON, **(_FRAME_ALLOWED if embed else _FRAME_DENIED)}
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
    data = await live_public(ctx, resource.kind, resource.row)
    count_view(request, resource.kind, resource.row, None)
    etag = page_etag(ctx, resource, data, embed=embed)
    headers.update({"ETag": etag, "Cache-Control": "no-cache"})
    pages = request.app[PAGE_CACHE]
    if _etag_matches(request, etag):
        pages.revalidated()
        return web.Response(status=304, headers=headers)
    page = pages.get(etag)
    if page is None:
        page = render_page(ctx, resource, data, embed=embed).encode()
        pages.put(etag, page)
    return _html(page, status=200, headers=headers)


async def loop_page(request: web.Request) -> web.Response:
    return await _serve(request, kind="loop", embed=False)


async def song_page(request: web.Request) -> web.Response:
    return await _serve(request, kind="song", embed=False)


async def embed_page(request: web.Request) -> web.Response:
    return await _serve(request, kind=None, embed=True)
