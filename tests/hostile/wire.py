"""Engine.IO / Socket.IO spoken frame by frame over aiohttp's WebSocket client, for tests that
send what no client library would: bare sessions, bogus headers, endless attachments, and
sockets that stop reading.

Engine.IO v4 over WebSocket: the server opens with ``0{...}``; a Socket.IO packet travels as
``4`` + its text (``0/ns,{auth}`` connects a namespace); a binary event is its text part
(``51-/ns,["event",{"_placeholder":true,"num":0}]``, with an ack id after the comma if one is
wanted) followed by one binary frame per attachment.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from typing import Any

import aiohttp

PLACEHOLDER = '{"_placeholder":true,"num":0}'


def rss_bytes(pid: int) -> int:
    """The resident set size of a process (``VmRSS`` of /proc/<pid>/status)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def binary_header(namespace: str, event: str, *, attachments: int = 1, ack: int | None = None) -> str:
    """The Engine.IO text frame announcing a Socket.IO binary event."""
    ack_id = "" if ack is None else str(ack)
    return f"45{attachments}-{namespace},{ack_id}[{json.dumps(event)},{PLACEHOLDER}]"


class RawSocket:
    """One Engine.IO WebSocket session. ``received`` keeps every frame read so far."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.received: list[str | bytes] = []

    @classmethod
    async def open(
        cls, http: aiohttp.ClientSession, base_url: str, *, forwarded_for: str | None = None
    ) -> RawSocket:
        """A new session; raises aiohttp.WSServerHandshakeError when the handshake is refused."""
        headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
        ws = await http.ws_connect(
            f"{base_url}/socket.io/?EIO=4&transport=websocket", headers=headers, autoping=True, heartbeat=None
        )
        sock = cls(ws)
        opening = await sock.next_frame()
        assert isinstance(opening, str) and opening.startswith("0{"), opening
        return sock

    async def next_frame(self, timeout: float = 10) -> str | bytes:
        """The next TEXT or BINARY frame; raises ConnectionError when the server closes."""
        message = await self.ws.receive(timeout=timeout)
        if message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            self.received.append(message.data)
            data: str | bytes = message.data
            return data
        raise ConnectionError(f"closed: {message.type.name} {message.data!r} {message.extra!r}")

    async def connect_namespace(self, namespace: str, auth: dict[str, Any]) -> None:
        await self.ws.send_str(f"40{namespace},{json.dumps(auth)}")
        while True:
            frame = await self.next_frame()
            if isinstance(frame, str) and frame.startswith(f"40{namespace},"):
                return
            if isinstance(frame, str) and frame.startswith(f"44{namespace},"):
                raise ConnectionRefusedError(frame)

    async def emit_binary(
        self, namespace: str, event: str, payload: bytes, *, ack: int | None = None
    ) -> None:
        await self.ws.send_str(binary_header(namespace, event, ack=ack))
        await self.ws.send_bytes(payload)

    async def closed_by_server(self, timeout: float = 10) -> tuple[int | None, str]:
        """Read until the server ends the session: (WebSocket close code, reason)."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.ws.receive()
                if message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    self.received.append(message.data)
                    continue
                if message.type is aiohttp.WSMsgType.CLOSE:
                    return int(message.data), str(message.extra or "")
                return self.ws.close_code, ""

    def texts(self, pattern: str) -> list[str]:
        return [f for f in self.received if isinstance(f, str) and re.search(pattern, f)]

    async def close(self) -> None:
        await self.ws.close()
