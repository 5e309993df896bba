"""Rendered REST bodies of documents nobody is editing, so a hot ``GET`` skips the database.

Entries are dropped whenever the row may change (snapshot, REST write, delete, access
change) on ANY instance: :meth:`ReadCache.invalidate` drops the local entry and calls
``on_invalidate`` (the document service publishes it on the bus); other instances call
:meth:`invalidate_local`. The bus is at most once, so the cache is trusted only while the
bus is up (``trusted``), it is cleared when the bus comes back, and every entry expires
after ``ttl`` seconds anyway: per-process state that is only ever a cache.

A reader that raced a change must not store what it read: it takes ``generation()`` before
reading and ``put`` refuses if any invalidation happened since.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import TTLCache


@dataclass(frozen=True)
class CachedDocument:
    owner_id: uuid.UUID
    is_public: bool
    body: bytes  # the JSON a GET answers with


class ReadCache:
    def __init__(
        self,
        size: int = 10_000,
        *,
        ttl: float = 30.0,
        on_invalidate: Callable[[str, uuid.UUID], None] | None = None,
        trusted: Callable[[], bool] | None = None,
    ) -> None:
        self._entries: TTLCache[tuple[str, uuid.UUID], CachedDocument] = TTLCache(maxsize=size, ttl=ttl)
        self._generation = 0
        self._on_invalidate = on_invalidate
        self._trusted = trusted
        self.hits = 0
        self.misses = 0

    def generation(self) -> int:
        return self._generation

    def get(self, kind: str, doc_id: uuid.UUID) -> CachedDocument | None:
        if self._trusted is not None and not self._trusted():
            return None
        entry = self._entries.get((kind, doc_id))
        if entry is None:
            self.misses += 1
        else:
            self.hits += 1
        return entry

    def put(self, kind: str, doc_id: uuid.UUID, entry: CachedDocument, *, read_at: int) -> None:
        if read_at == self._generation and (self._trusted is None or self._trusted()):
            self._entries[(kind, doc_id)] = entry

    def invalidate(self, kind: str, doc_id: uuid.UUID) -> None:
        """The row changed here: drop it on this instance and tell the others."""
        self.invalidate_local(kind, doc_id)
        if self._on_invalidate is not None:
            self._on_invalidate(kind, doc_id)

    def invalidate_local(self, kind: str, doc_id: uuid.UUID) -> None:
        self._generation += 1
        self._entries.pop((kind, doc_id), None)

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()
