"""The live inbox: a signed-in client connects the Socket.IO namespace ``/notifications``
(``auth: {token}``) and receives a ``notification`` event for each new or updated entry of its
inbox, from whichever instance wrote it: entries are published on one bus channel and each
instance emits them to the sockets of that user it holds."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

import socketio
from socketio.exceptions import ConnectionRefusedError as SocketRefused

from bus import Bus, Envelope
from events.notifications import Delivered
from identity.authenticator import Authenticator
from identity.errors import InvalidToken
from realtime.ysocketio import engineio_adapter

log = logging.getLogger(__name__)
NAMESPACE = "/notifications"
EVENT = "notification"


class InboxSockets:
    """``async with``: subscribes to the bus channel; ``attach`` before the app starts."""

    def __init__(
        self, sio: socketio.AsyncServer, auth: Authenticator, bus: Bus, *, channel_prefix: str
    ) -> None:
        self.sio = sio
        self.auth = auth
        self.bus = bus
        self.channel = f"{channel_prefix}notifications"
        self._sockets: dict[uuid.UUID, set[str]] = {}  # user -> socket ids
        self._users: dict[str, tuple[uuid.UUID, Any]] = {}  # socket id -> (user, Engine.IO session)
        self._sends: set[asyncio.Task[None]] = set()
        self.pushed = 0
        sio.on("connect", self._on_connect, namespace=NAMESPACE)
        sio.on("disconnect", self._on_disconnect, namespace=NAMESPACE)
        sio.on("*", self._on_other, namespace=NAMESPACE)

    async def __aenter__(self) -> InboxSockets:
        await self.bus.subscribe(self.channel, self._on_bus)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.bus.unsubscribe(self.channel)
        for task in list(self._sends):
            task.cancel()
        await asyncio.gather(*self._sends, return_exceptions=True)

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token:
            raise SocketRefused("sign in first: connect with auth {token}")
        try:
            caller = await self.auth.authenticate(token)
        except InvalidToken as exc:
            raise SocketRefused(f"invalid token: {exc.reason}", {"code": exc.code}) from None
        transport = engineio_adapter.engineio_sid(self.sio, sid, NAMESPACE)
        self._users[sid] = (caller.user_id, transport)
        self._sockets.setdefault(caller.user_id, set()).add(sid)
        engineio_adapter.namespace_joined(self.sio, transport)

    async def _on_disconnect(self, sid: str, reason: Any = None) -> None:
        entry = self._users.pop(sid, None)
        if entry is None:
            return
        user_id, transport = entry
        sids = self._sockets.get(user_id, set())
        sids.discard(sid)
        if not sids:
            self._sockets.pop(user_id, None)
        engineio_adapter.namespace_left(self.sio, transport)

    async def _on_other(self, event: str, sid: str, *args: Any) -> None:
        pass  # the inbox namespace only sends

    def publish(self, delivered: list[Delivered]) -> None:
        """New or updated inbox entries: to this instance's sockets and, over the bus, the others'."""
        for item in delivered:
            self._emit(item.user_id, item.body)
            self.bus.publish(
                self.channel, json.dumps({"userId": str(item.user_id), "entry": item.body}).encode()
            )

    def _on_bus(self, envelope: Envelope) -> None:
        try:
            message = json.loads(envelope.data)
            self._emit(uuid.UUID(message["userId"]), message["entry"])
        except (ValueError, KeyError, TypeError):
            log.warning("a malformed inbox message on the bus was dropped")

    def _emit(self, user_id: uuid.UUID, body: dict[str, Any]) -> None:
        for sid in self._sockets.get(user_id, ()):
            task = asyncio.create_task(
                self.sio.emit(EVENT, body, to=sid, namespace=NAMESPACE), name="inbox push"
            )
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)
            self.pushed += 1
