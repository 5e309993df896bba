"""document state and the durable update log

Adds the stored Yjs state of every loop and song (``doc_state``, ``doc_log_position``)
and the ``document_updates`` log the real-time layer appends to before it broadcasts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DOCUMENT_TABLES = ("loops", "songs")


def upgrade() -> None:
    op.create_table(
        "document_updates",
        # SQLite only autoincrements an INTEGER PRIMARY KEY; Postgres gets BIGSERIAL.
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("resource_type", sa.String(length=8), nullable=False),
        sa.Column("resource_id", sa.Uuid(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_document_updates")),
        # Never reuse an id (SQLite would reuse the rowid of deleted newest rows).
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("document_updates", schema=None) as batch_op:
        batch_op.create_index("ix_document_updates_resource_id_id", ["resource_id", "id"], unique=False)

    # Adding columns is a plain ALTER TABLE ... ADD COLUMN on both backends (batch mode
    # does not rebuild the table for it); existing rows get position 0 and no state.
    for table in DOCUMENT_TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("doc_state", sa.LargeBinary(), nullable=True))
            batch_op.add_column(
                sa.Column("doc_log_position", sa.BigInteger(), server_default="0", nullable=False)
            )


def downgrade() -> None:
    # recreate="never": SQLite (>= 3.35) drops these plain columns in place. A batch
    # rebuild of ``loops`` would drop the old table while foreign keys are enforced,
    # and its ON DELETE SET NULL self-reference would wipe ``forked_from`` in the copy.
    for table in DOCUMENT_TABLES:
        with op.batch_alter_table(table, schema=None, recreate="never") as batch_op:
            batch_op.drop_column("doc_log_position")
            batch_op.drop_column("doc_state")

    with op.batch_alter_table("document_updates", schema=None) as batch_op:
        batch_op.drop_index("ix_document_updates_resource_id_id")

    op.drop_table("document_updates")
