"""The models of the notifications and webhook-log routes (rest/notifications.py)."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import Field

from rest.schemas import InputModel, OutputModel, QueryModel, Timestamp


class NotificationsQuery(QueryModel):
    cursor: str | None = Field(default=None, max_length=200, description="`nextCursor` of the previous page")
    limit: int = Field(default=20, ge=1, le=50)
    unread: bool = Field(default=False, description="only unread entries")


class NotificationResource(OutputModel):
    type: str | None
    id: uuid.UUID


class NotificationPublic(OutputModel):
    id: uuid.UUID
    kind: str = Field(description="an event kind (docs/events.md)")
    count: int = Field(description="events in this entry (grouped kinds: comments, forks)")
    actor_ids: list[uuid.UUID] = Field(description="the latest users who acted, newest first (at most 5)")
    resource: NotificationResource | None
    data: dict[str, Any] = Field(description="the latest event's data")
    event_id: uuid.UUID
    created_at: Timestamp
    updated_at: Timestamp
    read: bool


class NotificationList(OutputModel):
    notifications: list[NotificationPublic]
    next_cursor: str | None
    unread_count: int


class MarkedRead(OutputModel):
    marked: int


class NotificationSettingsPublic(OutputModel):
    kinds: dict[str, bool] = Field(description="every notification kind and whether you receive it")


class NotificationSettingsUpdate(InputModel):
    kinds: dict[str, bool] = Field(max_length=100, description="kinds to turn on (true) or off (false)")


class DeliveriesQuery(QueryModel):
    before: int | None = Field(
        default=None, ge=1, description="`id` of the oldest delivery of the previous page"
    )
    limit: int = Field(default=50, ge=1, le=200)


class DeliveryPublic(OutputModel):
    id: int
    event_id: uuid.UUID
    event_type: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: Timestamp | None
    last_attempt_at: Timestamp | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: Timestamp | None
    created_at: Timestamp


class DeliveryList(OutputModel):
    deliveries: list[DeliveryPublic]
