"""events out: the outbox, notifications and their settings, webhook endpoints and deliveries

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 14:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSONDocument = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
BigIntegerKey = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "event_outbox",
        sa.Column("seq", BigIntegerKey, autoincrement=True, nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("occurred_at", TIME, nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("resource_type", sa.String(length=8), nullable=True),
        sa.Column("resource_id", sa.Uuid(), nullable=True),
        sa.Column("data", JSONDocument, nullable=False),
        sa.Column("coalesce_key", sa.String(length=120), nullable=True),
        sa.Column("available_at", TIME, nullable=False),
        sa.Column("dispatched_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_event_outbox")),
    )
    op.create_index(
        "ix_event_outbox_pending",
        "event_outbox",
        ["available_at"],
        sqlite_where=sa.text("dispatched_at IS NULL"),
        postgresql_where=sa.text("dispatched_at IS NULL"),
    )
    op.create_index(
        "uq_event_outbox_coalesce_key",
        "event_outbox",
        ["coalesce_key"],
        unique=True,
        sqlite_where=sa.text("coalesce_key IS NOT NULL"),
        postgresql_where=sa.text("coalesce_key IS NOT NULL"),
    )
    op.create_index(op.f("ix_event_outbox_occurred_at"), "event_outbox", ["occurred_at"])

    op.create_table(
        "notifications",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("group_key", sa.String(length=120), nullable=False),
        sa.Column("resource_type", sa.String(length=8), nullable=True),
        sa.Column("resource_id", sa.Uuid(), nullable=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("actor_ids", JSONDocument, nullable=False),
        sa.Column("data", JSONDocument, nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.Column("read_at", TIME, nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_notifications_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
    )
    op.create_index("ix_notifications_user_id_updated_at", "notifications", ["user_id", "updated_at"])
    op.create_index(
        "uq_notifications_unread_group",
        "notifications",
        ["user_id", "group_key"],
        unique=True,
        sqlite_where=sa.text("read_at IS NULL"),
        postgresql_where=sa.text("read_at IS NULL"),
    )

    op.create_table(
        "notification_settings",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("muted_kinds", JSONDocument, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_notification_settings_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_notification_settings")),
    )

    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("secret", sa.String(length=100), nullable=False),
        sa.Column("event_kinds", JSONDocument, nullable=False),
        sa.Column("description", sa.String(length=200), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("failing_since", TIME, nullable=True),
        sa.Column("disabled_at", TIME, nullable=True),
        sa.Column("disabled_reason", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
    )

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", BigIntegerKey, autoincrement=True, nullable=False),
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("event_seq", BigIntegerKey, nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TIME, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("last_attempt_at", TIME, nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("delivered_at", TIME, nullable=True),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoints.id"],
            name=op.f("fk_webhook_deliveries_endpoint_id_webhook_endpoints"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["event_seq"],
            ["event_outbox.seq"],
            name=op.f("fk_webhook_deliveries_event_seq_event_outbox"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    op.create_index(
        "ix_webhook_deliveries_status_next_attempt_at", "webhook_deliveries", ["status", "next_attempt_at"]
    )
    op.create_index("ix_webhook_deliveries_endpoint_id_id", "webhook_deliveries", ["endpoint_id", "id"])


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_endpoints")
    op.drop_table("notification_settings")
    op.drop_table("notifications")
    op.drop_table("event_outbox")
