"""Counters in Redis (redis-py asyncio), shared by every instance using the same Redis."""

from __future__ import annotations

import redis.asyncio
from limits.aio.storage import RedisStorage

from storage.counters.base import Counters

# A rate-limit check sits in front of every request: never let a sick Redis hold one up.
TIMEOUT_SECONDS = 0.5


def redis_counters(url: str, *, key_prefix: str) -> Counters:
    # We own the connection pool, so closing it is ours too (the library never closes it).
    pool = redis.asyncio.ConnectionPool.from_url(
        url, socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS
    )
    # limits names a Redis socket async+redis+unix:// (it only reads the scheme: we pass the pool).
    scheme = "async+redis+" if url.startswith("unix://") else "async+"
    storage = RedisStorage(
        scheme + url,
        implementation="redispy",
        wrap_exceptions=True,
        key_prefix=f"{key_prefix}:ratelimit",
        connection_pool=pool,  # type: ignore[arg-type]  # limits types **options as scalars; redispy takes a pool
    )
    return Counters(storage, backend="redis", close=pool.aclose)
