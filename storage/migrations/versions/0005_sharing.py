"""collaborators and view deduplication

Adds ``collaborators`` (editor / viewer roles on loops and songs), ``document_views``
(one row per viewer, document and counting window, so a view counts once across instances)
and the fork columns of songs (``fork_count``, ``forked_from``), as loops have them.

Revision ID: 0005
Revises: 0002
Create Date: 2026-12-01 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "collaborators",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("resource_type", sa.String(length=8), nullable=False),
        sa.Column("resource_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("role", sa.String(length=8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_collaborators_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_collaborators")),
        sa.UniqueConstraint("resource_id", "user_id", name=op.f("uq_collaborators_resource_id_user_id")),
    )
    with op.batch_alter_table("collaborators", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_collaborators_user_id"), ["user_id"], unique=False)

    op.create_table(
        "document_views",
        sa.Column("resource_id", sa.Uuid(), nullable=False),
        sa.Column("viewer", sa.String(length=64), nullable=False),
        sa.Column("period", sa.BigInteger(), nullable=False),
        sa.Column("resource_type", sa.String(length=8), nullable=False),
        sa.PrimaryKeyConstraint("resource_id", "viewer", "period", name=op.f("pk_document_views")),
    )
    with op.batch_alter_table("document_views", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_document_views_period"), ["period"], unique=False)

    with op.batch_alter_table("songs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fork_count", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("forked_from", sa.Uuid(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_songs_forked_from_songs"), "songs", ["forked_from"], ["id"], ondelete="SET NULL"
        )


def downgrade() -> None:
    with op.batch_alter_table("songs", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_songs_forked_from_songs"), type_="foreignkey")
        batch_op.drop_column("forked_from")
        batch_op.drop_column("fork_count")
    with op.batch_alter_table("document_views", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_document_views_period"))
    op.drop_table("document_views")
    with op.batch_alter_table("collaborators", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_collaborators_user_id"))
    op.drop_table("collaborators")
