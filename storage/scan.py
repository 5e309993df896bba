"""Optional malware scan of uploads by ClamAV's daemon (``clamd``), off by default.

Speaks clamd's ``INSTREAM`` command over TCP or a unix socket: the file goes in
length-prefixed chunks straight from the spooled upload, and clamd answers
``stream: OK``, ``stream: <signature> FOUND`` or ``... ERROR``. The protocol is four lines
of framing, so it is spoken here directly rather than through a synchronous client library.
If clamd cannot be reached the upload is refused (503): a configured scan is never skipped.
"""

from __future__ import annotations

import asyncio
import struct
from abc import ABC, abstractmethod
from typing import BinaryIO
from urllib.parse import urlsplit

from storage.errors import InfectedFile, ScannerUnavailable

CHUNK_SIZE = 64 * 1024


class Scanner(ABC):
    """Raises :class:`InfectedFile` for a file that must not be stored."""

    @abstractmethod
    async def scan(self, fh: BinaryIO) -> None:
        """Scan ``fh`` from its current position to its end."""


class ClamdScanner(Scanner):
    """``tcp://host:3310`` or ``unix:///run/clamav/clamd.ctl``."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        if parts.scheme == "tcp" and parts.hostname and parts.port:
            self._tcp: tuple[str, int] | None = (parts.hostname, parts.port)
            self._unix: str | None = None
        elif parts.scheme == "unix" and parts.path:
            self._tcp, self._unix = None, parts.path
        else:
            raise ValueError(f"CLAMD_URL must be tcp://host:port or unix:///path, got {url!r}")
        self.timeout = timeout

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._tcp is not None:
            return await asyncio.open_connection(*self._tcp)
        assert self._unix is not None
        return await asyncio.open_unix_connection(self._unix)

    async def scan(self, fh: BinaryIO) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                verdict = await self._instream(fh)
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            raise ScannerUnavailable(f"the malware scanner is unavailable ({type(exc).__name__})") from None
        if verdict.endswith("FOUND"):
            signature = verdict.removeprefix("stream:").removesuffix("FOUND").strip()
            raise InfectedFile(f"the file was refused by the malware scan ({signature})")
        if verdict != "stream: OK":
            raise ScannerUnavailable(f"the malware scanner could not scan the file ({verdict[:200]})")

    async def _instream(self, fh: BinaryIO) -> str:
        reader, writer = await self._connect()
        try:
            writer.write(b"zINSTREAM\0")
            while chunk := await asyncio.to_thread(fh.read, CHUNK_SIZE):
                writer.write(struct.pack(">I", len(chunk)) + chunk)
                await writer.drain()
            writer.write(struct.pack(">I", 0))
            await writer.drain()
            reply = await reader.readuntil(b"\0")
            return reply.rstrip(b"\0").decode("utf-8", "replace").strip()
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass
