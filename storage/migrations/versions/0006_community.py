"""community: profiles, comments, reports, moderation, localStorage migration, explore

Adds ``users.is_admin``, the ``hidden_at`` / ``hidden_reason`` moderation columns on users,
loops and songs, the ``comments``, ``reports``, ``migration_mappings`` and
``migration_runs`` tables, and the explore indexes (a pg_trgm GIN index on names on
Postgres).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSONDocument = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")
HIDDEN_TABLES = ("users", "loops", "songs")


def _hidden_columns() -> list[sa.Column]:
    return [
        sa.Column("hidden_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("hidden_reason", sa.String(length=200), nullable=True),
    ]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")

    # recreate="never": a NOT NULL column with a default is a plain ADD COLUMN on SQLite. A
    # batch rebuild would DROP TABLE users, and with foreign keys on that cascades into
    # every loop, song and token.
    with op.batch_alter_table("users", schema=None, recreate="never") as batch_op:
        batch_op.add_column(sa.Column("is_admin", sa.Boolean(), server_default=sa.false(), nullable=False))
    for table in HIDDEN_TABLES:
        with op.batch_alter_table(table, schema=None, recreate="never") as batch_op:
            for column in _hidden_columns():
                batch_op.add_column(column)

    op.create_table(
        "comments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("resource_type", sa.String(length=8), nullable=False),
        sa.Column("resource_id", sa.Uuid(), nullable=False),
        sa.Column("author_id", sa.Uuid(), nullable=False),
        sa.Column("body", sa.String(length=2000), nullable=False),
        sa.Column("anchor", JSONDocument, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("edited_at", sa.DateTime(timezone=True), nullable=True),
        *_hidden_columns(),
        sa.ForeignKeyConstraint(
            ["author_id"], ["users.id"], name=op.f("fk_comments_author_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_comments")),
    )
    op.create_index("ix_comments_author_id", "comments", ["author_id"])
    op.create_index("ix_comments_resource_id_created_at", "comments", ["resource_id", "created_at"])

    op.create_table(
        "reports",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("reporter_id", sa.Uuid(), nullable=False),
        sa.Column("resource_type", sa.String(length=8), nullable=False),
        sa.Column("resource_id", sa.Uuid(), nullable=False),
        sa.Column("reason", sa.String(length=1000), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("resolution", sa.String(length=8), nullable=True),
        sa.Column("resolved_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["reporter_id"], ["users.id"], name=op.f("fk_reports_reporter_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["resolved_by"], ["users.id"], name=op.f("fk_reports_resolved_by_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reports")),
        sa.UniqueConstraint(
            "reporter_id",
            "resource_type",
            "resource_id",
            name=op.f("uq_reports_reporter_id_resource_type_resource_id"),
        ),
    )
    op.create_index("ix_reports_resource_id", "reports", ["resource_id"])
    op.create_index("ix_reports_status_created_at", "reports", ["status", "created_at"])

    op.create_table(
        "migration_mappings",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("local_id", sa.String(length=128), nullable=False),
        sa.Column("resource_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_migration_mappings_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_migration_mappings")),
        sa.UniqueConstraint(
            "user_id", "kind", "local_id", name=op.f("uq_migration_mappings_user_id_kind_local_id")
        ),
    )
    op.create_table(
        "migration_runs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("loops_created", sa.Integer(), nullable=False),
        sa.Column("songs_created", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_migration_runs_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_migration_runs")),
    )
    op.create_index("ix_migration_runs_user_id_created_at", "migration_runs", ["user_id", "created_at"])

    for table in ("loops", "songs"):
        op.create_index(
            f"ix_{table}_name_trgm",
            table,
            ["name"],
            postgresql_using="gin",
            postgresql_ops={"name": "gin_trgm_ops"},
        )
        op.create_index(f"ix_{table}_public_created_at_id", table, ["is_public", "created_at", "id"])
        op.create_index(f"ix_{table}_public_view_count_id", table, ["is_public", "view_count", "id"])
    op.create_index("ix_loops_public_fork_count_id", "loops", ["is_public", "fork_count", "id"])
    op.create_index("ix_songs_public_fork_count_id", "songs", ["is_public", "fork_count", "id"])


def downgrade() -> None:
    op.drop_index("ix_loops_public_fork_count_id", table_name="loops")
    op.drop_index("ix_songs_public_fork_count_id", table_name="songs")
    for table in ("loops", "songs"):
        op.drop_index(f"ix_{table}_public_view_count_id", table_name=table)
        op.drop_index(f"ix_{table}_public_created_at_id", table_name=table)
        op.drop_index(f"ix_{table}_name_trgm", table_name=table)
    op.drop_table("migration_runs")
    op.drop_table("migration_mappings")
    op.drop_table("reports")
    op.drop_table("comments")
    # recreate="never": drop the plain columns in place (see 0002 for why not a rebuild).
    for table in HIDDEN_TABLES:
        with op.batch_alter_table(table, schema=None, recreate="never") as batch_op:
            batch_op.drop_column("hidden_reason")
            batch_op.drop_column("hidden_at")
    with op.batch_alter_table("users", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("is_admin")
