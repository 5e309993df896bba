"""The send queue of an Engine.IO socket served by ``engineio_adapter``: counted and bounded.

Every socket has one (the engine's ``create_queue``); what our fan-out, python-socketio's
emits and acks and engineio's pings send waits here until the socket's writer hands it to the
transport. See ``realtime/ysocketio/engineio_adapter.py``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any, Final

from realtime.wires import MAX_SEND_BACKLOG_BYTES

log = logging.getLogger(__name__)


class SendQueue:
    """An Engine.IO socket's send queue that knows how many bytes wait on it.

    The adapter's ``install`` has the engine make every socket's queue with this class (its
    ``create_queue``), so every send is counted: our fan-out and python-socketio's emits and
    acks. ``backlog`` is what was queued and not yet handed to the transport (the writer
    takes it down as it writes); past :data:`MAX_SEND_BACKLOG_BYTES`, with the transport's
    write buffer, the socket is dropped at once, before another reply is even encoded (the
    read loop stops at its next frame).

    It does what engineio asks of an ``asyncio.Queue`` (unbounded ``put``/``put_nowait``,
    ``get``/``get_nowait``, ``task_done``, ``join``: the adapter's ``self_check``), for one reader,
    the writer (``_write_queued``). Unlike ``asyncio.Queue``, which makes three deques and an
    Event for every socket up front (about 3 KB), it holds nothing while idle: its deque
    exists only while items wait, its getter only while the writer waits.
    """

    __slots__ = ("_all_done", "_getter", "_items", "_unfinished", "backlog", "overflowed", "sid", "transport")

    def __init__(self) -> None:
        self._items: collections.deque[Any] | None = None
        self._getter: asyncio.Future[None] | None = None  # the writer, parked on an empty queue
        self._unfinished = 0  # items put and not yet marked done (join)
        self._all_done: asyncio.Event | None = None  # made by a join that has to wait
        self.transport: asyncio.Transport | None = None  # set when the WebSocket is served
        self.sid = "-"  # the Engine.IO session's, for the log
        self.backlog = 0
        self.overflowed = False

    def qsize(self) -> int:
        return len(self._items) if self._items is not None else 0

    def empty(self) -> bool:
        return not self._items

    @property
    def writer_waiting(self) -> bool:
        """The writer is parked on this (empty) queue: everything put before was sent."""
        return self._getter is not None

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = collections.deque()
        self._items.append(item)
        self._unfinished += 1
        getter = self._getter
        if getter is not None and not getter.done():
            getter.set_result(None)
        if item is not None:
            self.backlog += packet_size(item)
            self.check_backlog()

    async def put(self, item: Any) -> None:
        self.put_nowait(item)  # unbounded: the backlog bound drops the socket instead

    def get_nowait(self) -> Any:
        items = self._items
        if not items:
            raise asyncio.QueueEmpty
        item = items.popleft()
        if not items:
            self._items = None
        return item

    async def get(self) -> Any:
        while not self._items:
            await self.wait(None)
        return self.get_nowait()

    async def wait(self, timeout: float | None) -> bool:
        """Wait until an item is queued; False if ``timeout`` seconds pass first."""
        if self._items:
            return True
        loop = asyncio.get_running_loop()
        getter = self._getter = loop.create_future()
        timer = loop.call_later(timeout, _time_out, getter) if timeout is not None else None
        try:
            await getter
        finally:
            self._getter = None
            if timer is not None:
                timer.cancel()
        return bool(self._items)

    def task_done(self) -> None:
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1
        if self._unfinished == 0 and self._all_done is not None:
            self._all_done.set()

    async def join(self) -> None:
        if self._unfinished:
            if self._all_done is None or self._all_done.is_set():
                self._all_done = asyncio.Event()
            await self._all_done.wait()

    def check_backlog(self) -> None:
        """Drop the connection if what waits to be sent is over the bound."""
        transport = self.transport
        buffered = transport.get_write_buffer_size() if transport is not None else 0
        if self.backlog + buffered > MAX_SEND_BACKLOG_BYTES and not self.overflowed:
            self.overflowed = True
            log.warning(
                "socket %s: closed, %d bytes waiting to be sent (over %d): the client does not read",
                self.sid,
                self.backlog + buffered,
                MAX_SEND_BACKLOG_BYTES,
            )
            if transport is not None:
                transport.abort()  # the read loop ends and the socket is disconnected


# What engineio's sockets may call on their queue (the adapter's self_check reads engineio's source).
QUEUE_CALLS: Final = frozenset(
    {"put", "put_nowait", "get", "get_nowait", "task_done", "join", "empty", "qsize"}
)


def _time_out(getter: asyncio.Future[None]) -> None:
    if not getter.done():
        getter.set_result(None)


def packet_size(pkt: Any) -> int:
    """Bytes of an Engine.IO packet on the queue (its data; a framed packet's are its frames)."""
    data = pkt.data
    return len(data) if isinstance(data, str | bytes) else 0
