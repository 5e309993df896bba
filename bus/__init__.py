"""The cross-instance bus: publish and subscribe bytes on named channels.

A leaf package (it depends on nothing internal). The backend is chosen by URL:
``memory://`` (in-process, the single-instance default) or ``redis://`` (Redis pub/sub).
See :mod:`bus.base` for the contract every backend keeps.
"""

from __future__ import annotations

from bus.base import Bus, BusState, Envelope, Handler
from bus.memory import MemoryBus, MemoryHub


def open_bus(url: str | None, *, instance_id: str | None = None, hub: MemoryHub | None = None) -> Bus:
    """The bus for ``url`` (``None`` or ``memory://``: in-process; ``redis://``, ``rediss://``:
    Redis pub/sub). Nothing connects until the bus is entered (``async with``)."""
    if not url or url.startswith("memory://"):
        return MemoryBus(instance_id=instance_id, hub=hub)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from bus.redis import RedisBus  # imported lazily: the embedded default needs no Redis

        return RedisBus(url, instance_id=instance_id)
    raise ValueError(f"unsupported bus URL scheme {url.split(':', 1)[0]}://")


__all__ = ["Bus", "BusState", "Envelope", "Handler", "MemoryBus", "MemoryHub", "open_bus"]
