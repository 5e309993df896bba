"""The Redis bus: redis-py asyncio pub/sub, one connection listening, one publishing.

The listener is supervised: a lost connection is logged, the state goes ``down``, and it
reconnects with capped exponential backoff, re-subscribes every channel and then runs the
``on_restored`` callbacks. It pings while idle, so a silently dead connection is noticed
within ``ping_interval``. redis-py's own retries are off on the listening connection so
that no outage goes unnoticed (a hidden reconnect would hide lost messages).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from bus.base import Bus, BusState

log = logging.getLogger(__name__)


class RedisBus(Bus):
    def __init__(
        self,
        url: str,
        *,
        instance_id: str | None = None,
        ping_interval: float = 1.0,
        min_backoff: float = 0.1,
        max_backoff: float = 5.0,
        max_queued: int = 50_000,
        connect_timeout: float = 5.0,
    ) -> None:
        super().__init__(instance_id=instance_id)
        self._url = url
        self._ping_interval = ping_interval
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._connect_timeout = connect_timeout
        self._outgoing: deque[tuple[str, bytes]] = deque(maxlen=max_queued)
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._confirmations: dict[str, asyncio.Future[None]] = {}
        self._publisher: Redis | None = None
        self._listener_client: Redis | None = None
        self._pubsub: PubSub | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._last_publish_error = 0.0
        self.dropped = 0  # messages that could not be published (receivers see a gap)

    async def start(self) -> None:
        if self._tasks:
            raise RuntimeError("RedisBus is already started")
        timeouts: dict[str, Any] = {"socket_connect_timeout": 2.0, "socket_keepalive": True}
        self._publisher = Redis.from_url(self._url, **timeouts)
        self._listener_client = Redis.from_url(self._url, retry=Retry(NoBackoff(), 0), **timeouts)
        self.state = BusState.DOWN
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks = [
            asyncio.create_task(self._listen(), name="bus-redis-listener"),
            asyncio.create_task(self._publish_loop(), name="bus-redis-publisher"),
        ]
        try:
            await asyncio.wait_for(self._up.wait(), self._connect_timeout)
        except TimeoutError:
            log.warning("bus: Redis not reachable yet; serving without it and retrying")

    async def stop(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), 2.0)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self._close_pubsub()
        for client in (self._publisher, self._listener_client):
            if client is not None:
                await client.aclose()
        self._publisher = self._listener_client = None
        self.state = BusState.STOPPED
        self._up.clear()

    async def flush(self) -> None:
        await self._idle.wait()

    # --- publishing --------------------------------------------------------------------

    def _send(self, channel: str, raw: bytes) -> None:
        if len(self._outgoing) == self._outgoing.maxlen:
            self.dropped += 1  # deque drops the oldest
        self._outgoing.append((channel, raw))
        self._idle.clear()
        self._wakeup.set()

    async def _publish_loop(self) -> None:
        assert self._publisher is not None
        while True:
            if not self._outgoing:
                self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = [self._outgoing.popleft() for _ in range(min(len(self._outgoing), 512))]
            try:
                async with self._publisher.pipeline(transaction=False) as pipe:
                    for channel, raw in batch:
                        pipe.publish(channel, raw)
                    await pipe.execute()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.dropped += len(batch)
                now = time.monotonic()
                if now - self._last_publish_error > 5.0:  # one line per outage, not per message
                    self._last_publish_error = now
                    log.warning("bus: publishing failed (%s); %d messages dropped so far", exc, self.dropped)
                await asyncio.sleep(self._min_backoff)

    # --- listening ---------------------------------------------------------------------

    async def _subscribe(self, channel: str) -> None:
        pubsub = self._pubsub
        if pubsub is None:
            return  # down: the listener subscribes everything when it reconnects
        confirmed = asyncio.get_running_loop().create_future()
        self._confirmations[channel] = confirmed
        try:
            await pubsub.subscribe(channel)
            await asyncio.wait_for(asyncio.shield(confirmed), 5.0)
        except (TimeoutError, OSError, ConnectionError) as exc:
            log.debug("bus: subscribing %s not confirmed (%s); the listener will retry", channel, exc)
        except Exception as exc:  # redis errors: the listener notices and resubscribes
            log.debug("bus: subscribing %s failed (%s)", channel, exc)
        finally:
            self._confirmations.pop(channel, None)

    async def _unsubscribe(self, channel: str) -> None:
        pubsub = self._pubsub
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.unsubscribe(channel)

    async def _listen(self) -> None:
        """Supervised: never returns but by cancellation; logs and reconnects on any error."""
        assert self._listener_client is not None
        backoff = self._min_backoff
        while True:
            pubsub = self._listener_client.pubsub()
            try:
                # A subscription of our own keeps the connection in pub/sub mode even when
                # no document is open, so pings and outages behave the same at all times.
                async with self._subscription_lock:
                    await pubsub.subscribe(f"bus:instance:{self.instance_id}", *self.channels)
                    self._backend_channels = set(self.channels)
                    self._pubsub = pubsub
                backoff = self._min_backoff
                await self._came_back()
                await self._read(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._pubsub = None
                self._went_down(exc)
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)

    async def _read(self, pubsub: PubSub) -> None:
        last_traffic = time.monotonic()
        while True:
            message: dict[str, Any] | None = await pubsub.get_message(timeout=self._ping_interval)
            now = time.monotonic()
            if message is None:
                if now - last_traffic >= self._ping_interval:
                    await pubsub.ping()
                    last_traffic = now
                continue
            last_traffic = now
            kind = message["type"]
            channel = message["channel"]
            channel = channel.decode() if isinstance(channel, bytes) else str(channel)
            if kind == "message":
                self._deliver(channel, message["data"])
            elif kind == "subscribe":
                confirmed = self._confirmations.get(channel)
                if confirmed is not None and not confirmed.done():
                    confirmed.set_result(None)

    async def _close_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
