"""The routes of the inbox (notifications) and of the webhook delivery log."""

from __future__ import annotations

from rest import notifications as handlers
from rest.event_schemas import (
    DeliveriesQuery,
    DeliveryList,
    MarkedRead,
    NotificationList,
    NotificationSettingsPublic,
    NotificationSettingsUpdate,
    NotificationsQuery,
)
from rest.openapi import Route


def routes() -> list[Route]:
    return [
        Route(
            "GET",
            "/api/notifications",
            handlers.list_notifications,
            "Your notifications, newest first (cursor pages), with the unread count; live on the "
            "`/notifications` socket namespace",
            "notifications",
            query=NotificationsQuery,
            response=NotificationList,
            errors=(400, 401),
        ),
        Route(
            "POST",
            "/api/notifications/read",
            handlers.mark_all_read,
            "Mark all your notifications read",
            "notifications",
            response=MarkedRead,
            errors=(401,),
        ),
        Route(
            "POST",
            "/api/notifications/{id}/read",
            handlers.mark_read,
            "Mark one notification read",
            "notifications",
            response=MarkedRead,
            errors=(400, 401, 404),
        ),
        Route(
            "GET",
            "/api/notifications/settings",
            handlers.get_settings,
            "Which notification kinds you receive",
            "notifications",
            response=NotificationSettingsPublic,
            errors=(401,),
        ),
        Route(
            "PATCH",
            "/api/notifications/settings",
            handlers.update_settings,
            "Turn notification kinds on or off",
            "notifications",
            body=NotificationSettingsUpdate,
            response=NotificationSettingsPublic,
            errors=(400, 401),
        ),
        Route(
            "GET",
            "/api/admin/webhooks/{id}/deliveries",
            handlers.webhook_deliveries,
            "A webhook endpoint's delivery log, newest first (moderators)",
            "moderation",
            query=DeliveriesQuery,
            response=DeliveryList,
            errors=(400, 401, 403, 404),
        ),
    ]
