"""The in-process bus: instances sharing one :class:`MemoryHub` (by default, only itself)."""

from __future__ import annotations

import asyncio

from bus.base import Bus, BusState


class MemoryHub:
    """Where in-process buses meet. Each bus gets its own unless one is passed in (tests
    pass one hub to several buses to stand for several instances)."""

    def __init__(self) -> None:
        self.subscribers: dict[str, set[MemoryBus]] = {}


class MemoryBus(Bus):
    def __init__(self, *, instance_id: str | None = None, hub: MemoryHub | None = None) -> None:
        super().__init__(instance_id=instance_id)
        self.hub = hub or MemoryHub()

    async def start(self) -> None:
        self.state = BusState.UP
        self._up.set()

    async def flush(self) -> None:
        await asyncio.sleep(0)  # deliveries are scheduled with call_soon

    async def stop(self) -> None:
        for channel in self.channels:
            await self.unsubscribe(channel)
        self.state = BusState.STOPPED
        self._up.clear()

    def reaches_others(self, channel: str) -> bool:
        return any(bus is not self for bus in self.hub.subscribers.get(channel, ()))

    def _send(self, channel: str, raw: bytes) -> None:
        loop = asyncio.get_running_loop()
        for bus in self.hub.subscribers.get(channel, ()):
            if bus is not self:
                loop.call_soon(bus._deliver, channel, raw)

    async def _subscribe(self, channel: str) -> None:
        self.hub.subscribers.setdefault(channel, set()).add(self)

    async def _unsubscribe(self, channel: str) -> None:
        subscribers = self.hub.subscribers.get(channel)
        if subscribers is not None:
            subscribers.discard(self)
            if not subscribers:
                del self.hub.subscribers[channel]
