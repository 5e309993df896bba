"""Rendered public pages by ETag, so a page is rendered once per version, not per request.

A page's ETag is computed from what the page shows (the document's public JSON, the owner's
name, the link and the markup version: ``rest.pages.page_etag``) before anything is rendered,
so a revalidation that matches is a 304 without rendering, and a page served again comes
from here. The cache is bounded by the bytes it holds (least recently used out), one per
instance; entries need no invalidation, since a change of the document changes its ETag.
"""

from __future__ import annotations

from aiohttp import web
from cachetools import LRUCache


class PageCache:
    """At most ``max_bytes`` of rendered pages (HTML bytes), keyed by ETag.

    ``hits`` counts pages answered without rendering (from here, or a 304), ``misses`` the
    pages rendered.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._pages: LRUCache[str, bytes] = LRUCache(maxsize=max_bytes, getsizeof=len)
        self.hits = 0
        self.misses = 0

    @property
    def size(self) -> int:
        """Bytes held."""
        return int(self._pages.currsize)

    def get(self, etag: str) -> bytes | None:
        page = self._pages.get(etag)
        if page is None:
            self.misses += 1
        else:
            self.hits += 1
        return page

    def revalidated(self) -> None:
        """A client's copy was still current (a 304): nothing was rendered."""
        self.hits += 1

    def put(self, etag: str, page: bytes) -> None:
        if len(page) <= self.max_bytes:  # a page larger than the whole cache is not kept
            self._pages[etag] = page


PAGE_CACHE = web.AppKey("page_cache", PageCache)
