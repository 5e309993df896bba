"""version history: authors in the update log, kept history, versions, history settings

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 14:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSONDocument = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("document_updates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("author_id", sa.Uuid(), nullable=True))
    op.create_table(
        "document_history",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("resource_type", sa.String(length=8), nullable=False),
        sa.Column("resource_id", sa.Uuid(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("author_id", sa.Uuid(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_document_history")),
    )
    op.create_index("ix_document_history_resource_id_id", "document_history", ["resource_id", "id"])
    op.create_index("ix_document_history_created_at", "document_history", ["created_at"])
    op.create_table(
        "document_versions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("resource_type", sa.String(length=8), nullable=False),
        sa.Column("resource_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("authors", JSONDocument, nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=True),
        sa.Column("summary", JSONDocument, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_document_versions")),
    )
    op.create_index(
        "ix_document_versions_resource_id_created_at", "document_versions", ["resource_id", "created_at"]
    )
    op.create_table(
        "document_history_settings",
        sa.Column("resource_id", sa.Uuid(), nullable=False),
        sa.Column("resource_type", sa.String(length=8), nullable=False),
        sa.Column("viewers_may_read", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("base_state", sa.LargeBinary(), nullable=True),
        sa.Column("base_position", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("base_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("resource_id", name=op.f("pk_document_history_settings")),
    )


def downgrade() -> None:
    op.drop_table("document_history_settings")
    op.drop_index("ix_document_versions_resource_id_created_at", table_name="document_versions")
    op.drop_table("document_versions")
    op.drop_index("ix_document_history_created_at", table_name="document_history")
    op.drop_index("ix_document_history_resource_id_id", table_name="document_history")
    op.drop_table("document_history")
    with op.batch_alter_table("document_updates", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("author_id")
