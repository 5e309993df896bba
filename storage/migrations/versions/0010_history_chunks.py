"""version history: kept log entries packed into compressed chunks once they are old enough

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 18:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigIntegerKey = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "document_history_chunks",
        sa.Column("id", BigIntegerKey, autoincrement=True, nullable=False),
        sa.Column("resource_type", sa.String(length=8), nullable=False),
        sa.Column("resource_id", sa.Uuid(), nullable=False),
        sa.Column("first_id", sa.BigInteger(), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.Column("first_at", TIME, nullable=False),
        sa.Column("last_at", TIME, nullable=False),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_document_history_chunks")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_document_history_chunks_resource_id_last_id",
        "document_history_chunks",
        ["resource_id", "last_id"],
    )
    op.create_index("ix_document_history_chunks_first_at", "document_history_chunks", ["first_at"])


def downgrade() -> None:
    # The packed entries go back to one row each (document_history) before the table goes.
    conn = op.get_bind()
    from storage.history import unpack_entries  # the format is the application's

    chunks = sa.table(
        "document_history_chunks",
        sa.column("resource_type", sa.String()),
        sa.column("resource_id", sa.Uuid()),
        sa.column("data", sa.LargeBinary()),
    )
    history = sa.table(
        "document_history",
        sa.column("id", sa.BigInteger()),
        sa.column("resource_type", sa.String()),
        sa.column("resource_id", sa.Uuid()),
        sa.column("data", sa.LargeBinary()),
        sa.column("created_at", TIME),
        sa.column("author_id", sa.Uuid()),
    )
    for resource_type, resource_id, data in conn.execute(sa.select(chunks)).all():
        rows = [
            {
                "id": entry.id,
                "resource_type": resource_type,
                "resource_id": resource_id,
                "data": entry.data,
                "created_at": entry.created_at,
                "author_id": entry.author_id,
            }
            for entry in unpack_entries(data)
        ]
        if rows:
            conn.execute(sa.insert(history), rows)
    op.drop_index("ix_document_history_chunks_first_at", table_name="document_history_chunks")
    op.drop_index("ix_document_history_chunks_resource_id_last_id", table_name="document_history_chunks")
    op.drop_table("document_history_chunks")
