"""Rendered REST bodies of documents nobody is editing, so a hot ``GET`` skips the database.

Entries are dropped whenever the row may change (snapshot, REST write, delete). A reader
that raced a change must not store what it read: it takes ``generation()`` before reading
and ``put`` refuses if any invalidation happened since.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from cachetools import LRUCache


@dataclass(frozen=True)
class CachedDocument:
    owner_id: uuid.UUID
    is_public: bool
    body: bytes  # the JSON a GET answers with


class ReadCache:
    def __init__(self, size: int = 10_000) -> None:
        self._entries: LRUCache[tuple[str, uuid.UUID], CachedDocument] = LRUCache(maxsize=size)
        self._generation = 0
        self.hits = 0
        self.misses = 0

    def generation(self) -> int:
        return self._generation

    def get(self, kind: str, doc_id: uuid.UUID) -> CachedDocument | None:
        entry = self._entries.get((kind, doc_id))
        if entry is None:
            self.misses += 1
        else:
            self.hits += 1
        return entry

    def put(self, kind: str, doc_id: uuid.UUID, entry: CachedDocument, *, read_at: int) -> None:
        if read_at == self._generation:
            self._entries[(kind, doc_id)] = entry

    def invalidate(self, kind: str, doc_id: uuid.UUID) -> None:
        self._generation += 1
        self._entries.pop((kind, doc_id), None)
