"""A real webhook receiver on loopback (aiohttp): records what arrives, verifies it with the
Standard Webhooks reference library, and can be taken down and brought back on its port."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class Receiver:
    port: int = field(default_factory=free_port)
    status: int = 200  # what it answers
    received: list[Received] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _hook(self, request: web.Request) -> web.Response:
        self.received.append(Received(dict(request.headers), await request.read()))
        return web.Response(status=self.status, text="ok")

    async def up(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        # Going down must not wait out the server's keep-alive connection to us (aiohttp's
        # graceful shutdown waits up to 60 s by default, the tests' whole time limit).
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def down(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def events(self, secret: str | None = None) -> list[dict[str, Any]]:
        """The events received with a 2xx answer... all received, verified if ``secret`` is given."""
        out = []
        for item in self.received:
            if secret is not None:
                Webhook(secret).verify(item.body, item.headers)  # raises if the signature is wrong
            out.append(item.event)
        return out

    def ids(self) -> list[str]:
        return [e["id"] for e in self.events()]
