"""The bus contract and what every backend shares: envelopes, ordering, gap detection.

Delivery is at most once (pub/sub): a message published while a subscriber is cut off is
gone. Subscribers learn that it happened in two ways, and must then catch up from the
durable store:

- ``on_restored`` callbacks run after the backend reconnects (``state`` was ``down``);
- an envelope whose ``after_gap`` is set follows a message of the same origin on the same
  channel that never arrived (each origin numbers its messages per channel).

An instance never receives its own messages.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import struct
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

# origin instance id (uuid bytes), sequence number, publish time (Unix seconds; the bus lag
# metric is receive time minus this, so it assumes instance clocks are in sync, as NTP keeps them)
_HEADER = struct.Struct(">16sQd")


class BusState(enum.Enum):
    STOPPED = "stopped"
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message as a subscriber receives it."""

    channel: str
    origin: str  # the publishing instance's id (hex)
    seq: int  # per origin and channel, from 1
    data: bytes
    after_gap: bool = False  # an earlier message of this origin on this channel was lost


Handler = Callable[[Envelope], None]
RestoredCallback = Callable[[], Awaitable[None]]


class Bus(ABC):
    """Publish/subscribe bytes on channels across instances. ``async with bus:``.

    ``publish`` never blocks: messages are queued and sent in order by the backend.
    Handlers run on the event loop, one message at a time, and must not block.
    """

    def __init__(self, *, instance_id: str | None = None) -> None:
        self.instance_id = instance_id or uuid.uuid4().hex
        self._origin = uuid.UUID(hex=self.instance_id).bytes
        self._handlers: dict[str, Handler] = {}
        self._backend_channels: set[str] = set()  # what the backend was asked to subscribe
        self._subscription_lock = asyncio.Lock()
        self._sent: dict[str, int] = {}  # channel -> last sequence number we published
        self._received: dict[tuple[bytes, str], int] = {}  # (origin, channel) -> last seen
        self._restored: list[RestoredCallback] = []
        self.state = BusState.STOPPED
        self._up = asyncio.Event()  # set while the state is UP
        self.published = 0
        self.delivered = 0
        self.gaps = 0
        self.outages = 0
        self.lag_seconds_sum = 0.0  # over ``delivered`` messages

    # --- lifecycle ---------------------------------------------------------------------

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    async def __aenter__(self) -> Bus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def on_restored(self, callback: RestoredCallback) -> None:
        """Run ``callback`` each time the bus comes back after an outage."""
        self._restored.append(callback)

    # --- the contract ------------------------------------------------------------------

    def reaches_others(self, channel: str) -> bool:
        """Whether a message on ``channel`` published now could reach another instance: False
        only when the backend knows that nobody else listens (so a caller may skip encoding
        it). A networked backend cannot know, and says True."""
        return True

    def publish(self, channel: str, data: bytes) -> None:
        """Queue ``data`` for every other instance subscribed to ``channel``."""
        self._require_started()
        seq = self._sent.get(channel, 0) + 1
        self._sent[channel] = seq
        self.published += 1
        self._send(channel, _HEADER.pack(self._origin, seq, time.time()) + data)

    async def subscribe(self, channel: str, handler: Handler) -> None:
        """Deliver messages on ``channel`` to ``handler`` (one handler per channel)."""
        self._require_started()
        if channel in self._handlers:
            raise ValueError(f"already subscribed to {channel!r}")
        self._handlers[channel] = handler
        await self._reconcile(channel)

    async def unsubscribe(self, channel: str) -> None:
        """Stop delivering ``channel`` and have the backend follow."""
        self.drop(channel)
        await self.settle(channel)

    def drop(self, channel: str) -> None:
        """Stop delivering ``channel`` at once, from synchronous code; await :meth:`settle`
        soon after to have the backend follow. Subscribing again meanwhile is safe."""
        if self._handlers.pop(channel, None) is not None:
            self._received = {k: v for k, v in self._received.items() if k[1] != channel}

    async def settle(self, channel: str) -> None:
        """Make the backend's subscription to ``channel`` match the latest call."""
        await self._reconcile(channel)

    async def _reconcile(self, channel: str) -> None:
        async with self._subscription_lock:
            wanted = channel in self._handlers
            if wanted and channel not in self._backend_channels:
                self._backend_channels.add(channel)
                await self._subscribe(channel)
            elif not wanted and channel in self._backend_channels:
                self._backend_channels.discard(channel)
                await self._unsubscribe(channel)

    @property
    def channels(self) -> list[str]:
        return list(self._handlers)

    @abstractmethod
    async def flush(self) -> None:
        """Wait until everything published so far has been handed to the backend."""

    # --- for backends ------------------------------------------------------------------

    @abstractmethod
    def _send(self, channel: str, raw: bytes) -> None: ...

    @abstractmethod
    async def _subscribe(self, channel: str) -> None: ...

    @abstractmethod
    async def _unsubscribe(self, channel: str) -> None: ...

    def _require_started(self) -> None:
        if self.state is BusState.STOPPED:
            raise RuntimeError(f"{type(self).__name__} is not started")

    def _deliver(self, channel: str, raw: bytes) -> None:
        """Decode one raw message and hand it to the channel's handler."""
        handler = self._handlers.get(channel)
        if handler is None or len(raw) < _HEADER.size:
            return
        origin, seq, sent_at = _HEADER.unpack_from(raw)
        if origin == self._origin:
            return
        key = (origin, channel)
        last = self._received.get(key)
        self._received[key] = seq
        after_gap = last is not None and seq != last + 1
        if after_gap:
            self.gaps += 1
        self.delivered += 1
        self.lag_seconds_sum += max(0.0, time.time() - sent_at)
        envelope = Envelope(channel, origin.hex(), seq, raw[_HEADER.size :], after_gap)
        try:
            handler(envelope)
        except Exception:
            log.exception("bus: handler of %s failed on a message from %s", channel, envelope.origin)

    def _went_down(self, reason: object) -> None:
        if self.state is BusState.UP:
            self.outages += 1
            log.warning("bus: connection lost (%s); rooms will catch up when it is back", reason)
        self.state = BusState.DOWN
        self._up.clear()

    async def _came_back(self) -> None:
        was_down = self.state is BusState.DOWN
        self.state = BusState.UP
        self._up.set()
        if not was_down:
            return
        if self.outages:
            log.warning("bus: connection regained after outage %d", self.outages)
        else:
            log.info("bus: connected")
        self._received.clear()  # sequence numbers restart being trusted from here
        for callback in list(self._restored):
            try:
                await callback()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("bus: a catch-up after the outage failed")
