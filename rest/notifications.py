"""The inbox over REST (``/api/notifications``) and the webhook delivery log for moderators
(``/api/admin/webhooks/{id}/deliveries``). Live entries arrive on the ``/notifications``
Socket.IO namespace (events/inbox_sockets.py)."""

from __future__ import annotations

from aiohttp import web

from events import notifications, webhooks
from rest.context import context, json_model, path_uuid, read_json, read_query, require_caller
from rest.event_schemas import (
    DeliveriesQuery,
    DeliveryList,
    MarkedRead,
    NotificationList,
    NotificationSettingsPublic,
    NotificationSettingsUpdate,
    NotificationsQuery,
)
from rest.moderation import require_admin
from storage.errors import NotFound


async def list_notifications(request: web.Request) -> web.Response:
    ctx = context(request)
    caller = await require_caller(request)
    query = read_query(request, NotificationsQuery)
    async with ctx.db.session() as session:
        page = await notifications.list_page(
            session, caller.user_id, cursor=query.cursor, limit=query.limit, unread_only=query.unread
        )
    return json_model(
        NotificationList.model_validate(
            {"notifications": page.entries, "nextCursor": page.next_cursor, "unreadCount": page.unread}
        )
    )


async def mark_read(request: web.Request) -> web.Response:
    ctx = context(request)
    entry_id = path_uuid(request)
    caller = await require_caller(request)
    async with ctx.db.write_session() as session:
        if not await notifications.entry_exists(session, caller.user_id, entry_id):
            raise NotFound("notification not found")
        marked = await notifications.mark_read(session, caller.user_id, entry_id)
    return json_model(MarkedRead(marked=marked))


async def mark_all_read(request: web.Request) -> web.Response:
    ctx = context(request)
    caller = await require_caller(request)
    async with ctx.db.write_session() as session:
        marked = await notifications.mark_read(session, caller.user_id, None)
    return json_model(MarkedRead(marked=marked))


def _settings(muted: list[str]) -> NotificationSettingsPublic:
    return NotificationSettingsPublic(kinds={k: k not in muted for k in notifications.notifiable_kinds()})


async def get_settings(request: web.Request) -> web.Response:
    ctx = context(request)
    caller = await require_caller(request)
    async with ctx.db.session() as session:
        muted = await notifications.muted_kinds(session, caller.user_id)
    return json_model(_settings(muted))


async def update_settings(request: web.Request) -> web.Response:
    ctx = context(request)
    caller = await require_caller(request)
    payload = await read_json(request, NotificationSettingsUpdate)
    async with ctx.db.write_session() as session:
        muted = await notifications.set_kinds(session, caller.user_id, payload.kinds)
    return json_model(_settings(muted))


async def webhook_deliveries(request: web.Request) -> web.Response:
    ctx = context(request)
    endpoint_id = path_uuid(request)
    await require_admin(request)
    query = read_query(request, DeliveriesQuery)
    async with ctx.db.session() as session:
        rows = await webhooks.deliveries(session, endpoint_id, before=query.before, limit=query.limit)
    return json_model(DeliveryList.model_validate({"deliveries": rows}))
