"""Events out, assembled: the content-edit debouncer and its recovery from the update log,
the webhook sender, the live inbox and the dispatcher, started and stopped together
(``async with``)."""

from __future__ import annotations

import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass

import socketio

from bus import Bus
from events.content_changes import ContentChanges
from events.content_recovery import ContentRecovery
from events.dispatcher import Dispatcher
from events.inbox_sockets import InboxSockets
from events.webhook_urls import UrlRules
from events.webhooks import WebhookSender
from identity.authenticator import Authenticator
from storage.database import Database


@dataclass(frozen=True)
class EventsConfig:
    poll_interval: float
    content_debounce: float
    content_lookback: float  # no further than the events kept (a pruned event is not missing)
    retention_days: int
    retry_schedule: tuple[float, ...]
    webhook_timeout: float
    disable_after: float
    rules: UrlRules
    admin_ids: frozenset[uuid.UUID]


class EventsOut:
    def __init__(
        self,
        db: Database,
        bus: Bus,
        sio: socketio.AsyncServer,
        auth: Authenticator,
        config: EventsConfig,
        *,
        channel_prefix: str,
    ) -> None:
        self.content = ContentChanges(db, window=config.content_debounce)
        self.recovery = ContentRecovery(db, window=config.content_debounce, lookback=config.content_lookback)
        self.sender = WebhookSender(
            db,
            rules=config.rules,
            schedule=config.retry_schedule,
            timeout=config.webhook_timeout,
            disable_after=config.disable_after,
            poll_interval=config.poll_interval,
        )
        self.inbox = InboxSockets(sio, auth, bus, channel_prefix=channel_prefix)
        self.dispatcher = Dispatcher(
            db,
            self.sender,
            admin_ids=config.admin_ids,
            poll_interval=config.poll_interval,
            retention_days=config.retention_days,
            push=self.inbox.publish,
        )
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> EventsOut:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(self.inbox)
            await stack.enter_async_context(self.sender)
            await stack.enter_async_context(self.dispatcher)
            await stack.enter_async_context(self.content)
            await stack.enter_async_context(self.recovery)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()
