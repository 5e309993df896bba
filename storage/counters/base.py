"""Sliding-window rate-limit counters on the ``limits`` library.

The strategy is ``limits``' sliding window counter: the count of the current fixed window
plus the previous window's count weighted by how much of it still overlaps the sliding
window. It needs two counters per key (one Redis round trip per hit, done atomically by the
library's Lua script) and cannot be beaten by bursting at a window boundary.

This module is the contract and imports no backend; :func:`storage.counters.open_counters`
picks one by URL.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType

from limits import RateLimitItemPerSecond
from limits.aio.storage import Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError

log = logging.getLogger(__name__)

# After a storage failure, answer "unavailable" at once for this long instead of making
# every request wait on a dead connection.
RETRY_AFTER_FAILURE_SECONDS = 1.0


class CountersUnavailable(Exception):
    """The counter storage (Redis) cannot be reached."""


@dataclass(frozen=True)
class Quota:
    """``limit`` hits per ``period`` seconds, counted separately for each key."""

    name: str
    limit: int
    period: int


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_after: int  # seconds until the window has room again (0: it has room now)


class Counters:
    """Counts hits per (quota, key). Enter it before use; the backend closes on exit."""

    def __init__(
        self, storage: Storage, *, backend: str, close: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        self.backend = backend
        self._storage = storage
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self._close = close
        self._started = False
        self._unavailable_until = 0.0
        self.last_error: str | None = None

    async def __aenter__(self) -> Counters:
        self._started = True
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._started = False
        if self._close is not None:
            await self._close()

    @property
    def available(self) -> bool:
        """False while the storage is failing (since the last failed hit)."""
        return self.last_error is None

    async def hit(self, quota: Quota, key: str) -> Decision:
        """Count one hit unless the window is full. Raises ``CountersUnavailable``."""
        if not self._started:
            raise RuntimeError("counters not started: enter them with 'async with' first")
        if time.monotonic() < self._unavailable_until:
            raise CountersUnavailable(self.last_error or "counter storage unavailable")
        item = RateLimitItemPerSecond(quota.limit, quota.period)
        try:
            allowed = await self._limiter.hit(item, quota.name, key)
            stats = await self._limiter.get_window_stats(item, quota.name, key)
        except StorageError as exc:
            self._unavailable_until = time.monotonic() + RETRY_AFTER_FAILURE_SECONDS
            if self.last_error is None:
                log.warning("rate-limit counters unavailable (%s): %s", self.backend, exc.storage_error)
            self.last_error = f"{type(exc.storage_error).__name__}: {exc.storage_error}"
            raise CountersUnavailable(self.last_error) from exc
        if self.last_error is not None:
            log.info("rate-limit counters available again (%s backend)", self.backend)
            self.last_error = None
        # A refused hit has no room now: at least a second. (The limits library's reset is the
        # window key's TTL modulo the period: 0 when the TTL is read at an exact multiple of it,
        # in the millisecond the key was made. The Redis counters test met it once.)
        at_least = 0 if allowed else 1
        reset_after = min(quota.period, max(at_least, math.ceil(stats.reset_time - time.time())))
        return Decision(
            allowed=allowed, limit=quota.limit, remaining=stats.remaining, reset_after=reset_after
        )

    async def check(self) -> bool:
        """Whether the storage answers right now (for readiness)."""
        return bool(await self._storage.check())
