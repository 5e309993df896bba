"""Rate-limit counters: one small interface (:mod:`storage.counters.base`), an in-process and
a Redis backend. The URL picks the backend, as for the bus (:func:`bus.open_bus`)."""

from __future__ import annotations

from storage.counters.base import Counters, CountersUnavailable, Decision, Quota


def open_counters(url: str | None, *, key_prefix: str = "mp") -> Counters:
    """The counters for ``url`` (``None`` or ``memory://``: in this process; ``redis://``,
    ``rediss://``, ``unix://``: shared by every instance on that Redis). Backends are imported
    here, lazily: the embedded default needs no Redis. Nothing connects until the first hit."""
    if not url or url.startswith("memory://"):
        from storage.counters.memory import memory_counters

        return memory_counters()
    if url.startswith(("redis://", "rediss://", "unix://")):
        from storage.counters.redis import redis_counters

        return redis_counters(url, key_prefix=key_prefix)
    raise ValueError(
        f"counters URL must be memory://, redis://, rediss:// or unix://, got {url.split(':', 1)[0]}://"
    )


__all__ = ["Counters", "CountersUnavailable", "Decision", "Quota", "open_counters"]
