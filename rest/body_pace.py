"""How long a streamed request body (a sample upload) may take: in total, and its pace.

A total time alone lets a client hold a connection and a spool file for that long while
sending almost nothing. So the body must also keep a minimum average rate: the client starts
with ``window`` seconds' worth of credit (``min_rate x window`` bytes), the credit drains at
``min_rate`` bytes per second and every byte received adds one back, up to that same cap.
When it runs out (the client sent less than ``min_rate`` on average, or nothing for
``window`` seconds) the read is cut off: 408 ``upload_too_slow``. The check is one timer,
rescheduled as bytes arrive: nothing runs while the client is silent.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from aiohttp import web

from rest.errors import RequestTimeout


class UploadTooSlow(RequestTimeout):
    code = "upload_too_slow"


class BodyPace:
    """``async with BodyPace(request, ...) as pace:`` read the body, calling ``pace.progress()``
    after each chunk; a timeout becomes a :class:`RequestTimeout` or :class:`UploadTooSlow`."""

    def __init__(self, request: web.BaseRequest, *, total: float, min_rate: float, window: float) -> None:
        if total <= 0 or min_rate <= 0 or window <= 0:
            raise ValueError("total, min_rate and window must be positive")
        self._stream = request.content
        self._total = total
        self._min_rate = min_rate
        self._max_credit = min_rate * window
        self._loop = asyncio.get_running_loop()
        self._start = self._last = self._loop.time()
        self._credit = self._max_credit
        self._seen = self._stream.total_bytes
        self._timer = asyncio.timeout_at(self._deadline())

    def _rate_deadline(self) -> float:
        return self._last + self._credit / self._min_rate

    def _deadline(self) -> float:
        return min(self._start + self._total, self._rate_deadline())

    def progress(self) -> None:
        """Count what arrived since the last call (bytes received on the connection)."""
        now = self._loop.time()
        received = self._stream.total_bytes
        spent = (now - self._last) * self._min_rate
        self._credit = min(self._max_credit, max(0.0, self._credit - spent) + (received - self._seen))
        self._seen = received
        self._last = now
        self._timer.reschedule(self._deadline())

    async def __aenter__(self) -> BodyPace:
        await self._timer.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await self._timer.__aexit__(exc_type, exc, tb)
        except TimeoutError:
            if self._rate_deadline() < self._start + self._total:
                raise UploadTooSlow(
                    f"the upload was slower than {self._min_rate:g} bytes/s; it was cut off"
                ) from None
            raise RequestTimeout(f"the upload did not arrive within {self._total:g} s") from None
