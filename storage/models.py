"""SQLAlchemy models: the seed's Prisma schema plus what the server needs around it.

UUID keys everywhere; JSON columns become JSONB on Postgres. Timestamps are set in
Python (UTC) so SQLite and Postgres store the same values.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    UniqueConstraint,
    Uuid,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Deterministic constraint names, so Alembic migrations are the same on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSONDocument = JSON().with_variant(JSONB(), "postgresql")
# SQLite only autoincrements an ``INTEGER PRIMARY KEY`` (a rowid alias), not a BIGINT one.
BigIntegerKey = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        datetime: DateTime(timezone=True),
        uuid.UUID: Uuid(),
    }


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    firebase_uid: Mapped[str | None] = mapped_column(String(128), unique=True)
    username: Mapped[str | None] = mapped_column(String(32), unique=True)
    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(100))
    avatar_url: Mapped[str | None] = mapped_column(String(2048))
    bio: Mapped[str | None] = mapped_column(String(500))
    is_anonymous: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # Anonymous accounts inactive for 90 days are purged; this is what "inactive" reads.
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # Community: moderators, and accounts hidden by them (see storage/moderation.py).
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    hidden_at: Mapped[datetime | None]
    hidden_reason: Mapped[str | None] = mapped_column(String(200))


class RefreshToken(Base):
    """One link of a rotation chain ("family"). Only a hash of the token is stored."""

    __tablename__ = "refresh_tokens"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    family_id: Mapped[uuid.UUID] = mapped_column(index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class Loop(Base):
    __tablename__ = "loops"
    __table_args__ = (Index("ix_loops_user_id_updated_at", "user_id", "updated_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    length: Mapped[int] = mapped_column(Integer)
    bpm: Mapped[int | None] = mapped_column(Integer)
    color: Mapped[str] = mapped_column(String(7))
    schema_version: Mapped[int | None] = mapped_column(Integer)
    chord_progression: Mapped[list[Any]] = mapped_column(JSONDocument)
    icon_sequence: Mapped[list[Any]] = mapped_column(JSONDocument)
    is_public: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    view_count: Mapped[int] = mapped_column(Integer, default=0)
    fork_count: Mapped[int] = mapped_column(Integer, default=0)
    forked_from: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("loops.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The Yjs document (the source of truth for the content), encoded as one update,
    # and the id of the last ``document_updates`` entry already folded into it.
    doc_state: Mapped[bytes | None] = mapped_column(LargeBinary)
    doc_log_position: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Community: hidden by a moderator (only the owner and admins still see it).
    hidden_at: Mapped[datetime | None]
    hidden_reason: Mapped[str | None] = mapped_column(String(200))


class Song(Base):
    __tablename__ = "songs"
    __table_args__ = (Index("ix_songs_user_id_updated_at", "user_id", "updated_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    bpm: Mapped[int] = mapped_column(Integer)
    time_signature: Mapped[str] = mapped_column(String(8))
    schema_version: Mapped[int | None] = mapped_column(Integer)
    timeline: Mapped[list[Any]] = mapped_column(JSONDocument)
    total_bars: Mapped[int] = mapped_column(Integer, default=0)
    is_public: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    view_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The Yjs document (the source of truth for the content), encoded as one update,
    # and the id of the last ``document_updates`` entry already folded into it.
    doc_state: Mapped[bytes | None] = mapped_column(LargeBinary)
    doc_log_position: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Song forks (issue 8), as for loops.
    fork_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    forked_from: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("songs.id", ondelete="SET NULL"))
    # Community: hidden by a moderator (only the owner and admins still see it).
    hidden_at: Mapped[datetime | None]
    hidden_reason: Mapped[str | None] = mapped_column(String(200))


class Sample(Base):
    __tablename__ = "samples"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    file_url: Mapped[str] = mapped_column(String(2048))
    storage_key: Mapped[str] = mapped_column(String(512))
    file_size: Mapped[int] = mapped_column(Integer)
    mime_type: Mapped[str] = mapped_column(String(32))
    duration: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Samples: the SHA-256 of the stored bytes (integrity checks, duplicate detection).
    content_sha256: Mapped[str | None] = mapped_column(String(64))


class SharedLink(Base):
    """A share token for a loop or a song (``resource_type`` says which table)."""

    __tablename__ = "shared_links"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    resource_type: Mapped[str] = mapped_column(String(8))
    resource_id: Mapped[uuid.UUID] = mapped_column(index=True)
    share_token: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class DocumentUpdate(Base):
    """The durable update log: one Yjs update of a loop or a song, in commit order.

    Entries with ``id`` greater than the document's ``doc_log_position`` are not yet in
    its ``doc_state``; a snapshot folds them in and deletes them. No foreign key: the
    entry belongs to either table (``resource_type`` says which).
    """

    __tablename__ = "document_updates"
    __table_args__ = (
        Index("ix_document_updates_resource_id_id", "resource_id", "id"),
        # AUTOINCREMENT: never hand out an id again once a snapshot deleted the newest
        # rows (a plain SQLite rowid would, and the reused id would count as folded in).
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True, autoincrement=True)
    resource_type: Mapped[str] = mapped_column(String(8))
    resource_id: Mapped[uuid.UUID]
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Who made the update (None: the server itself, or a share link): the history's authors.
    author_id: Mapped[uuid.UUID | None]


# --- version history (issue 28) ----------------------------------------------------------


class DocumentHistory(Base):
    """A log entry kept for the version history once a snapshot folded it in (same id, author
    and time as in ``document_updates``), until the retention window drops it."""

    __tablename__ = "document_history"
    __table_args__ = (
        Index("ix_document_history_resource_id_id", "resource_id", "id"),
        Index("ix_document_history_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    resource_type: Mapped[str] = mapped_column(String(8))
    resource_id: Mapped[uuid.UUID]
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]
    author_id: Mapped[uuid.UUID | None]


class DocumentHistoryChunk(Base):
    """Kept log entries packed together once older than ``HISTORY_PACK_AFTER_SECONDS``: ids
    ``first_id``..``last_id`` (``entries`` of them) made ``first_at``..``last_at``, their ids,
    authors, times and bytes compressed in ``data`` (storage/history.py: pack_entries)."""

    __tablename__ = "document_history_chunks"
    __table_args__ = (
        Index("ix_document_history_chunks_resource_id_last_id", "resource_id", "last_id"),
        Index("ix_document_history_chunks_first_at", "first_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True, autoincrement=True)
    resource_type: Mapped[str] = mapped_column(String(8))
    resource_id: Mapped[uuid.UUID]
    first_id: Mapped[int] = mapped_column(BigInteger)
    last_id: Mapped[int] = mapped_column(BigInteger)
    first_at: Mapped[datetime]
    last_at: Mapped[datetime]
    entries: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class DocumentVersion(Base):
    """A version of a loop or song: its whole Yjs state at a log position, named or automatic."""

    __tablename__ = "document_versions"
    __table_args__ = (Index("ix_document_versions_resource_id_created_at", "resource_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    resource_type: Mapped[str] = mapped_column(String(8))
    resource_id: Mapped[uuid.UUID]
    name: Mapped[str | None] = mapped_column(String(100))  # None: an automatic version
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[uuid.UUID | None]  # who named it (automatic versions: None)
    authors: Mapped[list[Any]] = mapped_column(JSONDocument)  # who edited since the previous version
    position: Mapped[int] = mapped_column(BigInteger)  # the last log entry it holds
    # The content, zlib-compressed JSON (storage/history.py: pack_content), and at checkpoints
    # only (one per HISTORY_CHECKPOINT_ENTRIES kept updates) the whole Yjs state, zlib-compressed:
    # where time travel starts replaying.
    content: Mapped[bytes] = mapped_column(LargeBinary)
    state: Mapped[bytes | None] = mapped_column(LargeBinary)
    summary: Mapped[dict[str, Any]] = mapped_column(JSONDocument)  # changes since the previous version


class DocumentHistorySettings(Base):
    """Per document: who may read its history, and the state its kept history starts from."""

    __tablename__ = "document_history_settings"

    resource_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    resource_type: Mapped[str] = mapped_column(String(8))
    viewers_may_read: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The document as it was at ``base_at`` (log position ``base_position``): history entries
    # after it replay onto it. None until a snapshot first keeps entries.
    base_state: Mapped[bytes | None] = mapped_column(LargeBinary)
    base_position: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    base_at: Mapped[datetime | None]


# --- sharing, views, collaborators (issue 8) ---------------------------------------------


class Collaborator(Base):
    """A user other than the owner who may edit or view a loop or song."""

    __tablename__ = "collaborators"
    __table_args__ = (UniqueConstraint("resource_id", "user_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    resource_type: Mapped[str] = mapped_column(String(8))
    # No foreign key: the id is a loop's or a song's (``resource_type`` says which).
    resource_id: Mapped[uuid.UUID]
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DocumentView(Base):
    """One viewer counted once for one document in one counting period (deduplication).

    The key makes ``INSERT ... ON CONFLICT DO NOTHING`` count a viewer once however many
    instances saw them; rows of past windows are purged.
    """

    __tablename__ = "document_views"

    resource_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    viewer: Mapped[str] = mapped_column(String(64), primary_key=True)
    period: Mapped[int] = mapped_column(BigInteger, primary_key=True, index=True)
    resource_type: Mapped[str] = mapped_column(String(8))


# --- community: comments, reports, localStorage migration --------------------------------


class Comment(Base):
    """A comment on a loop or a song (``resource_type`` says which table; no foreign key,
    so deleting the document deletes its comments explicitly, see storage/library.py)."""

    __tablename__ = "comments"
    __table_args__ = (Index("ix_comments_resource_id_created_at", "resource_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    resource_type: Mapped[str] = mapped_column(String(8))
    resource_id: Mapped[uuid.UUID]
    author_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    body: Mapped[str] = mapped_column(String(2000))
    # ``{"bar": int, "step"?: int}``: where in the loop or song the comment points.
    anchor: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    edited_at: Mapped[datetime | None]
    hidden_at: Mapped[datetime | None]
    hidden_reason: Mapped[str | None] = mapped_column(String(200))


class Report(Base):
    """A user's report of a loop, song, user or comment; one per reporter and resource."""

    __tablename__ = "reports"
    __table_args__ = (
        UniqueConstraint("reporter_id", "resource_type", "resource_id"),
        Index("ix_reports_status_created_at", "status", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    reporter_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    resource_type: Mapped[str] = mapped_column(String(8))
    resource_id: Mapped[uuid.UUID] = mapped_column(index=True)
    reason: Mapped[str] = mapped_column(String(1000))
    status: Mapped[str] = mapped_column(String(8), default="open")  # open | resolved
    resolution: Mapped[str | None] = mapped_column(String(8))  # hide | dismiss
    resolved_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]


class MigrationMapping(Base):
    """A localStorage id the composer sent to POST /api/migrate -> the document made from it.

    The unique key makes migration idempotent: a retry finds the mapping instead of creating
    the document again.
    """

    __tablename__ = "migration_mappings"
    __table_args__ = (UniqueConstraint("user_id", "kind", "local_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8))
    local_id: Mapped[str] = mapped_column(String(128))
    resource_id: Mapped[uuid.UUID]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MigrationRun(Base):
    """One migration run, charged against the hourly limit before its work is done; what it
    created is filled in when it finishes (a run refused after being charged keeps zeros)."""

    __tablename__ = "migration_runs"
    __table_args__ = (Index("ix_migration_runs_user_id_created_at", "user_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    loops_created: Mapped[int] = mapped_column(Integer)
    songs_created: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# Explore: name search and the public sorts. On Postgres the name index is a pg_trgm GIN
# index, which serves ILIKE '%text%' (prefix and substring) at any table size; SQLite
# gets a plain index on the name (see storage/explore.py for how it searches there).
for _model in (Loop, Song):
    _table = _model.__tablename__
    Index(
        f"ix_{_table}_name_trgm",
        _model.name,
        postgresql_using="gin",
        postgresql_ops={"name": "gin_trgm_ops"},
    )
    Index(f"ix_{_table}_public_created_at_id", _model.is_public, _model.created_at, _model.id)
    Index(f"ix_{_table}_public_view_count_id", _model.is_public, _model.view_count, _model.id)
    Index(f"ix_{_table}_public_fork_count_id", _model.is_public, _model.fork_count, _model.id)


# --- events out: the outbox, in-app notifications, operator webhooks (events/) -------------


class OutboxEvent(Base):
    """A domain event, written in the transaction of the change that caused it and fanned
    out (notifications, webhook deliveries) once by whichever instance claims it.

    Content changes are coalesced: a row whose ``coalesce_key`` is set gathers the editors of
    one document while ``available_at`` is ahead (the debounce window)."""

    __tablename__ = "event_outbox"
    # Few indexes, each small: every REST mutation writes a row (bench/events.py). Pending
    # rows only in the dispatcher's index; coalescing keys only where set.
    __table_args__ = (
        Index(
            "ix_event_outbox_pending",
            "available_at",
            sqlite_where=text("dispatched_at IS NULL"),
            postgresql_where=text("dispatched_at IS NULL"),
        ),
        Index(
            "uq_event_outbox_coalesce_key",
            "coalesce_key",
            unique=True,
            sqlite_where=text("coalesce_key IS NOT NULL"),
            postgresql_where=text("coalesce_key IS NOT NULL"),
        ),
    )

    seq: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID]  # the stable event id (random: unique without an index)
    kind: Mapped[str] = mapped_column(String(40))
    occurred_at: Mapped[datetime] = mapped_column(index=True)
    actor_id: Mapped[uuid.UUID | None]
    resource_type: Mapped[str | None] = mapped_column(String(8))
    resource_id: Mapped[uuid.UUID | None]
    data: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    coalesce_key: Mapped[str | None] = mapped_column(String(120))
    available_at: Mapped[datetime]
    dispatched_at: Mapped[datetime | None]


class Notification(Base):
    """One entry of a user's inbox; events of one group (comments on one loop) while it is
    unread are one entry with a count."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_user_id_updated_at", "user_id", "updated_at"),
        Index(
            "uq_notifications_unread_group",
            "user_id",
            "group_key",
            unique=True,
            sqlite_where=text("read_at IS NULL"),
            postgresql_where=text("read_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(40))
    group_key: Mapped[str] = mapped_column(String(120))
    resource_type: Mapped[str | None] = mapped_column(String(8))
    resource_id: Mapped[uuid.UUID | None]
    count: Mapped[int] = mapped_column(Integer, default=1)
    actor_ids: Mapped[list[Any]] = mapped_column(JSONDocument)
    data: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    event_id: Mapped[uuid.UUID]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    read_at: Mapped[datetime | None]


class NotificationSetting(Base):
    """The kinds of notifications a user turned off (every kind is on by default)."""

    __tablename__ = "notification_settings"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    muted_kinds: Mapped[list[Any]] = mapped_column(JSONDocument)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookEndpoint(Base):
    """An operator's webhook receiver: URL, signing secret, which event kinds it wants."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    url: Mapped[str] = mapped_column(String(2048))
    secret: Mapped[str] = mapped_column(String(100))
    event_kinds: Mapped[list[Any]] = mapped_column(JSONDocument)  # empty: every kind
    description: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    failing_since: Mapped[datetime | None]
    disabled_at: Mapped[datetime | None]
    disabled_reason: Mapped[str | None] = mapped_column(String(200))


class WebhookDelivery(Base):
    """One event owed to one endpoint: pending until delivered or out of attempts; the
    delivery log of an endpoint."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_endpoint_id_id", "endpoint_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntegerKey, primary_key=True, autoincrement=True)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), ForeignKey("event_outbox.seq", ondelete="CASCADE")
    )
    status: Mapped[str] = mapped_column(String(10))  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_attempt_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    delivered_at: Mapped[datetime | None]
