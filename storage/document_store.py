"""Durable storage of the collaborative documents (every loop and song is a Yjs document).

A document is stored as two parts:

- ``doc_state`` on its ``loops`` / ``songs`` row: the full Yjs state encoded as one
  update (``None`` until the first snapshot), and ``doc_log_position``: the id of the
  last ``document_updates`` entry already folded into that state;
- the update log, ``document_updates``: every Yjs update accepted since, in id order.

The document is ``doc_state`` with every log entry of id > ``doc_log_position`` applied.
A snapshot writes a new state and position in one transaction; the entries it folded in
are deleted in short batches, the first in that same transaction (entries up to the position
are never read).

Ordering guarantee: log ids become visible in increasing order. On SQLite, write
transactions are serialized (``BEGIN IMMEDIATE``); on Postgres :func:`append_updates`
takes a transaction-scoped advisory lock before it draws ids, so the sequence is drawn
and committed in the same order. Once an id is visible, no smaller id can appear later,
so "everything up to position N" is well defined.

The functions run in the caller's transaction and never commit, except
``load_document_and_access``: the opening of a live room, which reads on its own from one
snapshot. The ones a snapshot is made of are :data:`~storage.database.Steps` (statements
yielded one by one), so a snapshot runs as one ``Database.write_steps`` transaction:
``run_steps`` runs them in a session of the caller's.
"""

from __future__ import annotations

import functools
import sqlite3
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
from sqlalchemy import Row, Table, Update, bindparam, delete, exists, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import aggregate_order_by, array_agg
from sqlalchemy.engine import CursorResult, Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from storage.access import AccessRules
from storage.database import AnySelect, Database, Steps, run_steps
from storage.kinds import RESOURCE_MODELS, document_model
from storage.models import Collaborator, DocumentUpdate, Loop, Song, utcnow

# The update log's Core table. A room's snapshot (every SNAPSHOT_INTERVAL_SECONDS while it is
# edited) reads and trims the log through it, and locks the row through the document's table:
# the same SQL without the ORM's statement compilation, which made a large share of a
# snapshot's CPU under many quiet rooms (issue 31's S3, py-spy).
_LOG = cast(Table, DocumentUpdate.__table__)

# Key of the Postgres advisory lock that orders log appends (any fixed 64-bit value).
_APPEND_LOCK_KEY = 0x6D705F646F636C67  # "mp_doclg"
_SQLITE_INSERT = (
    "INSERT INTO document_updates (resource_type, resource_id, data, created_at, author_id)"
    " VALUES (?, ?, ?, ?, ?)"
)

# Postgres, a batch as one statement in its own transaction: one round trip, where BEGIN,
# the lock, the INSERT and COMMIT were four. The lock is taken (the CTE, read by the sort)
# before the INSERT draws any id and held to the commit; ids are drawn in input order.
_POSTGRES_APPEND = """
WITH append_lock AS (SELECT pg_advisory_xact_lock($1))
INSERT INTO document_updates (resource_type, resource_id, data, created_at, author_id)
SELECT entry.resource_type, entry.resource_id, entry.data, $5, entry.author_id
FROM append_lock, unnest($2::text[], $3::uuid[], $4::bytea[], $6::uuid[])
    WITH ORDINALITY AS entry(resource_type, resource_id, data, author_id, position)
ORDER BY entry.position
RETURNING id
"""

# 5 bound parameters a row: far below SQLite's limit of 32766 per statement.

# Log entries deleted per transaction on SQLite once a snapshot folded them in
# (trim_document_log): 500 take ~2 ms on the event loop (~3 µs a row), and SQLite's one
# write lock, which the update log needs, is free again between batches. Smaller batches
# cost more in all: at 7,000 edits/s, batches of 100 spent more time in SQLAlchemy than in
# SQLite (trimming was ~4 % of the server's CPU); past ~1,000 a batch sometimes takes 20 ms.
SQLITE_TRIM_BATCH = 500

# Columns save_snapshot manages itself (or that must never change through it).
_RESERVED_COLUMNS = frozenset({"id", "user_id", "doc_state", "doc_log_position"})


@dataclass(frozen=True)
class StoredDocument:
    """What the database holds for one document.

    ``state`` is the last snapshot (``None`` if none was taken yet), ``position`` the id
    of the last log entry folded into it, and ``updates`` the log entries after it as
    ``(id, update)`` pairs in id order. Apply ``state`` then every update, in order.
    """

    state: bytes | None
    position: int
    updates: list[tuple[int, bytes]]


async def load_document(
    session: AsyncSession, *, resource_type: str, resource_id: uuid.UUID
) -> StoredDocument | None:
    """The stored state of a loop or song and the log entries after it; None if no such row.

    The row is read ``FOR SHARE`` on Postgres, so a snapshot committing between the two
    reads cannot pair an old state with a log it already trimmed (SQLite transactions
    read from one snapshot anyway).
    """
    model = document_model(resource_type)
    row = (
        await session.execute(
            select(model.doc_state, model.doc_log_position)
            .where(model.id == resource_id)
            .with_for_update(read=True)
        )
    ).one_or_none()
    if row is None:
        return None
    state, position = row
    updates = await run_steps(
        session, updates_after(resource_type=resource_type, resource_id=resource_id, position=position)
    )
    return StoredDocument(state=state, position=int(position), updates=updates)


async def load_document_and_access(
    db: Database, *, resource_type: str, resource_id: uuid.UUID
) -> tuple[StoredDocument, AccessRules] | None:
    """What a live room starts from: the stored document and its access rules, read from one
    snapshot of the database (a snapshot committing meanwhile cannot pair an old state with
    a log it already trimmed), straight on the driver: a room opens in one step, not six
    round trips through a session. None if no such row."""
    values = {"id": resource_id, "resource_type": resource_type}
    if db.dialect == "postgresql":
        # One statement reads from one snapshot: one round trip, where a REPEATABLE READ
        # transaction of the three reads took five (0.3 ms against 1.8-2.9 ms, measured).
        rows = await db.read(_room_read_postgres(resource_type), values)
        if not rows:
            return None
        state, position, owner_id, is_public, hidden_at, ids, updates, members, roles = rows[0]
        log: Sequence[Sequence[Any]] = list(zip(ids or (), updates or (), strict=True))
        collaborators: Sequence[Sequence[Any]] = list(zip(members or (), roles or (), strict=True))
    else:
        row_read, log_read, collaborators_read = _room_reads(resource_type)
        rows, log, collaborators = await db.read_together(
            [(row_read, values), (log_read, values), (collaborators_read, values)]
        )
        if not rows:
            return None
        state, position, owner_id, is_public, hidden_at = rows[0]
    stored = StoredDocument(
        state=None if state is None else bytes(state),
        position=int(position),
        updates=[(int(entry_id), bytes(data)) for entry_id, data in log],
    )
    access = AccessRules(
        owner_id, is_public, hidden_at is not None, {user: role for user, role in collaborators}
    )
    return stored, access


def room_open_reads(dialect: str) -> list[tuple[AnySelect, Mapping[str, Any]]]:
    """The reads of ``load_document_and_access`` for every kind, finding nothing, for
    ``Database.keep_warm``."""
    reads: list[tuple[AnySelect, Mapping[str, Any]]] = []
    for resource_type in RESOURCE_MODELS:
        values = {"id": uuid.UUID(int=0), "resource_type": resource_type}
        statements = (
            [_room_read_postgres(resource_type)] if dialect == "postgresql" else _room_reads(resource_type)
        )
        reads += [(statement, values) for statement in statements]
    return reads


@functools.cache
def _room_reads(resource_type: str) -> tuple[AnySelect, AnySelect, AnySelect]:
    """The three statements of ``load_document_and_access``, built once per kind (the
    database keeps their compiled form per statement object)."""
    model = document_model(resource_type)
    document_id = bindparam("id", type_=model.id.type)
    row = select(
        model.doc_state, model.doc_log_position, model.user_id, model.is_public, model.hidden_at
    ).where(model.id == document_id)
    position = select(model.doc_log_position).where(model.id == document_id).scalar_subquery()
    log = (
        select(DocumentUpdate.id, DocumentUpdate.data)
        .where(
            DocumentUpdate.resource_id == document_id,
            DocumentUpdate.resource_type == bindparam("resource_type"),
            DocumentUpdate.id > position,
        )
        .order_by(DocumentUpdate.id)
    )
    collaborators = select(Collaborator.user_id, Collaborator.role).where(
        Collaborator.resource_id == document_id
    )
    return row, log, collaborators


@functools.cache
def _room_read_postgres(resource_type: str) -> AnySelect:
    """``_room_reads`` as one Postgres statement: the row, then the unfolded log's ids and
    updates and the collaborators' ids and roles, each as an array in one order."""
    model = document_model(resource_type)

    def array_of(column: Any, order: Any, *where: Any) -> Any:
        return select(array_agg(aggregate_order_by(column, order))).where(*where).scalar_subquery()

    unfolded = (
        DocumentUpdate.resource_id == model.id,
        DocumentUpdate.resource_type == bindparam("resource_type"),
        DocumentUpdate.id > model.doc_log_position,
    )
    members = Collaborator.resource_id == model.id
    return select(
        model.doc_state,
        model.doc_log_position,
        model.user_id,
        model.is_public,
        model.hidden_at,
        array_of(DocumentUpdate.id, DocumentUpdate.id, *unfolded),
        array_of(DocumentUpdate.data, DocumentUpdate.id, *unfolded),
        array_of(Collaborator.user_id, Collaborator.user_id, members),
        array_of(Collaborator.role, Collaborator.user_id, members),
    ).where(model.id == bindparam("id", type_=model.id.type))


def lock_document_state(
    *, resource_type: str, resource_id: uuid.UUID
) -> Steps[tuple[bytes | None, int] | None]:
    """``(state, position)`` of a document row, locked until the end of the transaction.

    The lock serializes snapshots of one document across instances: ``FOR UPDATE`` on
    Postgres; on SQLite the caller's write transaction (``BEGIN IMMEDIATE``) already
    excludes every other writer. None if the row is gone.
    """
    rows = cast(Table, document_model(resource_type).__table__).c  # Core columns: see _LOG
    row = (
        yield select(rows.doc_state, rows.doc_log_position).where(rows.id == resource_id).with_for_update()
    ).one_or_none()
    if row is None:
        return None
    return row[0], int(row[1])


# A log entry to append: ``(resource_type, resource_id, update)``, optionally followed by its
# author's user id (None or left out: no author, e.g. the server itself).
LogEntry = tuple[str, uuid.UUID, bytes] | tuple[str, uuid.UUID, bytes, uuid.UUID | None]


def entry_author(entry: LogEntry) -> uuid.UUID | None:
    return entry[3] if len(entry) > 3 else None  # type: ignore[misc]


async def append_updates(session: AsyncSession | AsyncConnection, entries: Sequence[LogEntry]) -> list[int]:
    """Insert ``(resource_type, resource_id, update[, author])`` log entries; their ids, in order.

    On Postgres this first takes the log's advisory lock until the end of the transaction
    (see the module docstring): commit promptly after calling it.
    """
    if not entries:
        return []
    for entry in entries:
        document_model(entry[0])
    now = utcnow()
    table = cast(Table, DocumentUpdate.__table__)
    conn = session if isinstance(session, AsyncConnection) else await session.connection()
    if conn.dialect.name == "postgresql":
        rows = [
            {
                "resource_type": entry[0],
                "resource_id": entry[1],
                "data": bytes(entry[2]),
                "created_at": now,
                "author_id": entry_author(entry),
            }
            for entry in entries
        ]
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _APPEND_LOCK_KEY})
        # One INSERT ... SELECT ... ORDER BY ... RETURNING, rows returned in input order.
        ids = await conn.scalars(insert(table).returning(table.c.id, sort_by_parameter_order=True), rows)
        return [int(i) for i in ids]
    # SQLite: one executemany of a fixed statement on the driver (every aiosqlite call is a
    # hop to its thread and back; this takes the fewest). The update log's writer does not
    # come here: it runs append_updates_sqlite on connections of its own.
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None  # a live pooled connection always has its driver's
    params = sqlite_log_rows(conn.dialect, entries)
    await driver.executemany(_SQLITE_INSERT, params)
    async with driver.execute("SELECT last_insert_rowid()") as cursor:
        row = await cursor.fetchone()
    return _consecutive_ids(int(row[0]), len(params))


async def append_updates_postgres(connection: asyncpg.Connection, entries: Sequence[LogEntry]) -> list[int]:
    """Append log entries on an asyncpg connection in autocommit, in one statement that is
    its own transaction (committed when this returns); their ids, in order."""
    rows = await connection.fetch(
        _POSTGRES_APPEND,
        _APPEND_LOCK_KEY,
        [entry[0] for entry in entries],
        [entry[1] for entry in entries],
        [bytes(entry[2]) for entry in entries],
        utcnow(),
        [entry_author(entry) for entry in entries],
    )
    # Drawn in input order under the lock: the sorted ids are the entries' ids, in order.
    return sorted(int(row[0]) for row in rows)


def sqlite_log_rows(dialect: Dialect, entries: Sequence[LogEntry]) -> list[tuple[Any, ...]]:
    """Log entries as driver parameters for ``_SQLITE_INSERT``, converted by the columns' own types."""
    to_uuid, to_time = _log_bind_processors(dialect)
    stamp = to_time(utcnow())
    return [
        (entry[0], to_uuid(entry[1]), bytes(entry[2]), stamp, _author_param(to_uuid, entry))
        for entry in entries
    ]


def _author_param(to_uuid: Callable[[Any], Any], entry: LogEntry) -> Any:
    author = entry_author(entry)
    return None if author is None else to_uuid(author)


@functools.cache
def _log_bind_processors(dialect: Dialect) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """The columns' own conversions of a resource id and a timestamp for this dialect."""
    table = cast(Table, DocumentUpdate.__table__)
    to_uuid = table.c.resource_id.type.dialect_impl(dialect).bind_processor(dialect)
    to_time = table.c.created_at.type.dialect_impl(dialect).bind_processor(dialect)
    assert to_uuid is not None and to_time is not None
    return to_uuid, to_time


def append_updates_sqlite(connection: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> list[int]:
    """Append ``sqlite_log_rows`` in one write transaction on a plain sqlite3 connection (in
    autocommit mode, as ``storage.database`` sets them up); their ids, in order."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.executemany(_SQLITE_INSERT, rows)
        (last,) = connection.execute("SELECT last_insert_rowid()").fetchone()
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return _consecutive_ids(int(last), len(rows))


def _consecutive_ids(last: int, count: int) -> list[int]:
    # The transaction holds the write lock (BEGIN IMMEDIATE) and AUTOINCREMENT ids only
    # grow, so a batch got the consecutive ids ending at last_insert_rowid().
    return list(range(last - count + 1, last + 1))


def updates_after(
    *, resource_type: str, resource_id: uuid.UUID, position: int
) -> Steps[list[tuple[int, bytes]]]:
    """The log entries of one document with id > ``position``, as ``(id, update)`` in id order."""
    document_model(resource_type)
    rows = yield (
        select(DocumentUpdate.id, DocumentUpdate.data)
        .where(
            DocumentUpdate.resource_id == resource_id,
            DocumentUpdate.resource_type == resource_type,
            DocumentUpdate.id > position,
        )
        .order_by(DocumentUpdate.id)
    )
    return [(int(i), bytes(data)) for i, data in rows]


def log_after(*, resource_type: str, resource_id: uuid.UUID, position: int) -> Steps[tuple[int, int]]:
    """How many log entries one document has with id > ``position``, and the newest id
    (``position`` if none): what a snapshot checks against the entries its room holds."""
    document_model(resource_type)
    log = _LOG.c  # Core columns: see _LOG
    count, newest = (
        yield select(func.count(), func.max(log.id)).where(
            log.resource_id == resource_id,
            log.resource_type == resource_type,
            log.id > position,
        )
    ).one()
    return int(count), position if newest is None else int(newest)


def trim_document_log(
    *, resource_type: str, resource_id: uuid.UUID, up_to: int, limit: int | None
) -> Steps[int]:
    """Delete the log entries of one document with id <= ``up_to`` (entries a snapshot folded
    in), at most ``limit`` of them, the oldest first; how many. With a limit, call it until it
    deletes fewer."""
    document_model(resource_type)
    log = _LOG.c  # Core columns: see _LOG
    folded = [log.resource_id == resource_id, log.resource_type == resource_type, log.id <= up_to]
    if limit is not None:
        oldest = select(log.id).where(*folded).order_by(log.id).limit(limit)
        folded = [log.id.in_(oldest)]
    deleted = yield delete(_LOG).where(*folded)
    return int(cast(CursorResult[Any], deleted).rowcount)


async def has_unsnapshotted_updates(
    session: AsyncSession, *, resource_type: str, resource_id: uuid.UUID
) -> bool:
    """Whether the log holds entries of this document not yet folded into its state.

    False when the document row no longer exists (there is nothing to snapshot into).
    """
    model = document_model(resource_type)
    position = select(model.doc_log_position).where(model.id == resource_id).scalar_subquery()
    found = await session.scalar(
        select(
            exists().where(
                DocumentUpdate.resource_id == resource_id,
                DocumentUpdate.resource_type == resource_type,
                DocumentUpdate.id > position,
            )
        )
    )
    return bool(found)


def save_snapshot(
    *,
    resource_type: str,
    resource_id: uuid.UUID,
    state: bytes,
    position: int,
    columns: Mapping[str, Any],
    only_if_no_state: bool = False,
) -> Steps[bool]:
    """Store ``state`` as the document, folding in every log entry up to ``position``.

    ``state`` must contain every log entry of this document with id <= ``position``.
    Also sets the given extra ``columns`` (the JSON mirror of the content, ``name``,
    ``updated_at``, ...: the caller passes them). The folded log entries are left for
    :func:`trim_document_log` (readers skip them already: they read after the position):
    deleting thousands of them in one transaction held SQLite's one write lock, which the
    update log needs, for tens of milliseconds, so a caller deletes them in short batches.
    Never moves backwards: returns False, changing nothing, if the row is gone or
    already holds a later position (an equal position is accepted).

    ``only_if_no_state``: store only if the row has no state yet, else return False.
    For a first state built from the JSON columns of a document that predates the CRDT
    state: two processes doing that at once would each build one (as different Yjs
    clients), and edits made on top of the overwritten one would never apply again. The
    loser must reload the document instead.
    """
    model = document_model(resource_type)
    statement = _snapshot_update(model, resource_id, state, position, columns, only_if_no_state)
    updated = yield statement.returning(model.id)
    return updated.first() is not None


def save_snapshot_returning_row(
    *, resource_type: str, resource_id: uuid.UUID, state: bytes, position: int, columns: Mapping[str, Any]
) -> Steps[Row[Any] | None]:
    """:func:`save_snapshot` that returns the row as saved, every column but the state (what a
    REST write answers with, without reading the row again); None if nothing was saved."""
    model = document_model(resource_type)
    statement = _snapshot_update(model, resource_id, state, position, columns, only_if_no_state=False)
    updated = yield statement.returning(*_row_columns(model))
    return updated.first()


def _snapshot_update(
    model: type[Loop] | type[Song],
    resource_id: uuid.UUID,
    state: bytes,
    position: int,
    columns: Mapping[str, Any],
    only_if_no_state: bool,
) -> Update:
    reserved = _RESERVED_COLUMNS.intersection(columns)
    if reserved:
        raise ValueError(f"save_snapshot cannot set {sorted(reserved)} through columns")
    where = [model.id == resource_id, model.doc_log_position <= position]
    if only_if_no_state:
        where.append(model.doc_state.is_(None))
    # The ORM entity, not its table: the ORM also updates a row object a caller's session
    # holds (tests/storage: test_snapshot_updates_an_object_loaded_in_the_same_session).
    return update(model).where(*where).values(**columns, doc_state=bytes(state), doc_log_position=position)


@functools.cache
def _row_columns(model: type[Loop] | type[Song]) -> tuple[Any, ...]:
    """Every column of a document row but its Yjs state, named as the model's attributes."""
    return tuple(getattr(model, a.key) for a in model.__mapper__.column_attrs if a.key != "doc_state")


async def delete_document_log(session: AsyncSession, *, resource_type: str, resource_id: uuid.UUID) -> None:
    """Delete every log entry of a document (call it when the loop or song is deleted)."""
    document_model(resource_type)
    await session.execute(
        delete(DocumentUpdate).where(
            DocumentUpdate.resource_id == resource_id,
            DocumentUpdate.resource_type == resource_type,
        )
    )
