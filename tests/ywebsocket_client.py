"""A small y-websocket client for tests: a pycrdt document synced over the y-websocket
protocol (``realtime/ywebsocket/protocol.py``'s framing), on a real aiohttp WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from urllib.parse import urlencode

import aiohttp
from pycrdt import Decoder, Doc, Map, TransactionEvent, YSyncMessageType

from realtime.ywebsocket import protocol
from realtime.ywebsocket.protocol import MessageType
from tests.helpers import eventually


class YwsClient:
    """One connection to ``/ws/<kind>:<id>``: ``doc`` follows the server; local changes to
    ``doc`` are sent as sync updates. ``close_code`` is set once the server closed it."""

    def __init__(self, base_url: str, name: str, **params: str) -> None:
        self.url = f"{base_url}/ws/{name}" + (f"?{urlencode(params)}" if params else "")
        self.doc: Doc[Any] = Doc()
        self.synced = False
        self.close_code: int | None = None
        self.close_reason = ""
        self.denied: list[str] = []  # y-protocols permission-denied reasons
        self.awareness: list[bytes] = []  # awareness updates received
        self.frames: set[tuple[int, ...]] = set()  # kinds of frames received: (type,) or (0, sync type)
        self._remote = False
        self._http = aiohttp.ClientSession()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self.doc.observe(self._on_change)

    async def connect(
        self, *, first_message: bytes | None = None, wait_synced: bool = True, handshake: bool = True
    ) -> YwsClient:
        """Open the socket, send ``first_message`` (e.g. an auth message), then sync step 1
        (unless not ``handshake``); wait for the server's sync step 2 (or a close)."""
        self.ws = await self._http.ws_connect(self.url, max_msg_size=0)
        if first_message is not None:
            await self.ws.send_bytes(first_message)
        if handshake:
            await self.ws.send_bytes(protocol.sync_message(YSyncMessageType.SYNC_STEP1, self.doc.get_state()))
        self._reader = asyncio.create_task(self._read())
        if wait_synced:
            await eventually(lambda: self.synced or self.close_code is not None)
        return self

    def _on_change(self, event: TransactionEvent) -> None:
        if not self._remote and self.ws is not None and not self.ws.closed:
            frame = protocol.sync_message(YSyncMessageType.SYNC_UPDATE, event.update)
            asyncio.get_running_loop().create_task(self.ws.send_bytes(frame))

    async def _read(self) -> None:
        assert self.ws is not None
        while True:
            message = await self.ws.receive()
            if message.type is not aiohttp.WSMsgType.BINARY:
                if message.type is aiohttp.WSMsgType.CLOSE:
                    self.close_reason = str(message.extra or "")
                break
            self.frames.add(
                tuple(message.data[:2]) if message.data[0] == MessageType.SYNC else (message.data[0],)
            )
            if message.data[:1] == bytes([MessageType.AUTH]):  # permission denied: 0, reason
                self.denied.append(Decoder(message.data[2:]).read_var_string())
                continue
            parsed = protocol.parse(message.data)
            if parsed.type is MessageType.SYNC:
                if parsed.sync_type is YSyncMessageType.SYNC_STEP1:
                    reply = self.doc.get_update(parsed.payload)
                    await self.ws.send_bytes(protocol.sync_message(YSyncMessageType.SYNC_STEP2, reply))
                    continue
                self._remote = True
                try:
                    self.doc.apply_update(parsed.payload)
                finally:
                    self._remote = False
                if parsed.sync_type is YSyncMessageType.SYNC_STEP2:
                    self.synced = True
            elif parsed.type is MessageType.AWARENESS:
                self.awareness.append(parsed.payload)
            elif parsed.type is MessageType.AUTH:
                self.denied.append(parsed.payload.decode())
        self.close_code = self.ws.close_code if self.ws.close_code is not None else 1006

    def meta(self) -> Map:
        return self.doc.get("meta", type=Map)

    async def send(self, frame: bytes) -> None:
        assert self.ws is not None
        await self.ws.send_bytes(frame)

    async def wait_closed(self, timeout: float = 10.0) -> int:
        await eventually(lambda: self.close_code is not None, timeout=timeout)
        assert self.close_code is not None
        return self.close_code

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader
        await self._http.close()
