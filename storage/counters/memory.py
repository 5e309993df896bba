"""Counters kept in this process: the embedded default, one instance only."""

from __future__ import annotations

from limits.aio.storage import MemoryStorage

from storage.counters.base import Counters


def memory_counters() -> Counters:
    return Counters(MemoryStorage(), backend="memory")
