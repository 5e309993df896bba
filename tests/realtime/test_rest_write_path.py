"""The REST write path runs once through the document service: one role check (from the access
rules the room is loaded with), no re-read of what it just wrote, one read-cache invalidation.
A PATCH of content on a document nobody has open is at most three database transactions: the
room's load, the update log's commit and the fold.

Transactions are counted on every database connection the app opens, from the drivers'
side where SQLAlchemy does not see them (the update log's writer, the hot reads and the fold
on a SQLite file run straight on the drivers): on SQLite every statement of every
connection (sqlite3's trace callback), on Postgres the engine's transactions (SQLAlchemy
events) and every statement on the driver pool's connections (asyncpg's query logger). A
statement run outside BEGIN ... COMMIT is a transaction of its own.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import event

from music.kinds import DocKind
from music.reading import loop_doc_to_content
from musicplayground.app import create_app
from rest.context import REST_CONTEXT
from settings import Settings
from storage.database import POSTGRES_POOL_SIZE
from tests.helpers import LOOP, bearer
from tests.realtime.conftest import ClientFactory

CHORDS = [{"bar": 0, "chord": "Am"}, {"bar": 2, "chord": "F"}]


class TransactionLog:
    """The transactions the drivers ran, each as its statements."""

    def __init__(self) -> None:
        self.transactions: list[list[str]] = []
        self._open: dict[object, list[str]] = {}
        self._lock = threading.Lock()  # sqlite3 calls back on aiosqlite's and the update log's threads

    def saw(self, connection: object, sql: str) -> None:
        words = sql.split(None, 2)
        first = words[0].upper() if words else ""
        with self._lock:
            if first == "PRAGMA":  # connection set-up and WAL checkpoints, not transactions
                return
            if first == "BEGIN":
                self._open[connection] = [sql]
                return
            current = self._open.get(connection)
            ends = first in ("COMMIT", "END") or (first == "ROLLBACK" and "TO" not in sql.upper().split())
            if ends:
                if current is not None:
                    self.transactions.append([*current, sql])
                    del self._open[connection]
            elif current is not None:
                current.append(sql)
            else:
                self.transactions.append([sql])  # autocommit: a transaction of its own

    def since(self, start: int) -> list[list[str]]:
        """Transactions ended since ``start``, except the share-expiry watcher's look at the
        share links (once a second while any room is loaded, whatever the request) and the
        events subsystem's own work (``events/``: its dispatcher's polls, and the debounced
        ``content_changed`` event, written beside the document path, at most once per document
        per window, and recovered from the update log if lost: docs/events.md)."""
        with self._lock:
            ended = self.transactions[start:]
        return [t for t in ended if not _only_reads_share_links(t) and not _only_events_out(t)]

    def mark(self) -> int:
        with self._lock:
            return len(self.transactions)


def _only_reads_share_links(transaction: list[str]) -> bool:
    body = [
        s for s in transaction if s.split(None, 1)[0].upper() not in ("BEGIN", "COMMIT", "ROLLBACK", "END")
    ]
    return bool(body) and all(s.lstrip().upper().startswith("SELECT") and "shared_links" in s for s in body)


EVENTS_TABLES = (
    "event_outbox",
    "notifications",
    "notification_settings",
    "webhook_endpoints",
    "webhook_deliveries",
)


def _only_events_out(transaction: list[str]) -> bool:
    body = [
        s for s in transaction if s.split(None, 1)[0].upper() not in ("BEGIN", "COMMIT", "ROLLBACK", "END")
    ]
    writes = [s for s in body if not s.lstrip().upper().startswith("SELECT")]
    about_events = [s for s in body if any(table in s for table in EVENTS_TABLES)]
    return bool(about_events) and all(any(table in s for table in EVENTS_TABLES) for s in writes)


@pytest.fixture
def transactions(backend: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TransactionLog]:
    log = TransactionLog()
    if backend == "sqlite":
        # Every connection the app opens (engine, update log, reader, loop writer) is made here.
        real_connect = sqlite3.connect

        def traced_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
            connection = real_connect(*args, **kwargs)
            connection.set_trace_callback(lambda sql: log.saw(connection, sql))
            return connection

        monkeypatch.setattr(sqlite3, "connect", traced_connect)
    yield log


@pytest.fixture
async def client(
    aiohttp_client: Any, settings: Settings, backend: str, transactions: TransactionLog
) -> TestClient:
    """The real app, its transactions logged (overrides the shared fixture)."""
    client: TestClient = await aiohttp_client(create_app(settings))
    if backend == "postgres":
        db = client.app[REST_CONTEXT].db
        engine = db.engine.sync_engine

        def key(conn: Any) -> object:
            return conn.connection.dbapi_connection

        event.listen(engine, "begin", lambda conn: transactions.saw(key(conn), "BEGIN"))
        event.listen(engine, "commit", lambda conn: transactions.saw(key(conn), "COMMIT"))
        event.listen(engine, "rollback", lambda conn: transactions.saw(key(conn), "ROLLBACK"))
        event.listen(
            engine, "before_cursor_execute", lambda conn, _c, sql, *_: transactions.saw(key(conn), sql)
        )
        async with AsyncExitStack() as held:  # every connection of the driver pool, held at once
            for _ in range(POSTGRES_POOL_SIZE):
                connection = await held.enter_async_context(db.postgres_connection())
                connection.add_query_logger(lambda record, c=connection: transactions.saw(c, record.query))
    return client


async def create_loop(client: TestClient, token: str) -> dict[str, Any]:
    resp = await client.post("/api/loops", json=LOOP, headers=bearer(token))
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


async def counted_patch(
    client: TestClient, transactions: TransactionLog, path: str, body: dict[str, Any], token: str
) -> tuple[dict[str, Any], list[list[str]], int]:
    """PATCH ``path``: its response, the transactions it ran and how many read-cache
    invalidations it made."""
    cache = client.app[REST_CONTEXT].documents.read_cache
    start, generation = transactions.mark(), cache.generation()
    resp = await client.patch(path, json=body, headers=bearer(token))
    assert resp.status == 200, await resp.text()
    patched = dict(await resp.json())
    await asyncio.sleep(0.3)  # anything the write left running, and asyncpg's logger callbacks
    return patched, transactions.since(start), cache.generation() - generation


def _touching(transactions: list[list[str]], *fragments: str) -> list[list[str]]:
    return [t for t in transactions if any(all(f in s for f in fragments) for s in t)]


async def test_a_content_patch_on_a_document_nobody_has_open_is_three_transactions(
    client: TestClient, transactions: TransactionLog, connect: ClientFactory
) -> None:
    session = await (await client.post("/api/auth/anonymous")).json()
    token = session["token"]
    # The same write once before, on another document: connections, statements and types warm.
    warm = await create_loop(client, token)
    await counted_patch(client, transactions, f"/api/loops/{warm['id']}", {"name": "Warm"}, token)
    loop = await create_loop(client, token)
    assert client.app[REST_CONTEXT].documents.loaded(DocKind.LOOP, uuid.UUID(loop["id"])) is None

    patched, ran, invalidations = await counted_patch(
        client,
        transactions,
        f"/api/loops/{loop['id']}",
        {"name": "Patched", "chordProgression": CHORDS},
        token,
    )

    assert len(ran) <= 3, "\n\n".join("\n".join(t) for t in ran)
    # What it must have run, so the count saw the whole path: the log's commit, and the fold
    # that stored the row (and deleted the folded entry), after which nothing read it again.
    assert len(_touching(ran, "INSERT INTO document_updates")) == 1, ran
    (fold,) = _touching(ran, "UPDATE loops SET")
    assert any("DELETE FROM document_updates" in s for s in fold), fold
    assert invalidations == 1
    # The answer: the row as the fold stored it, with the live content.
    assert patched["name"] == "Patched" and patched["chordProgression"] == CHORDS
    assert patched["updatedAt"] > loop["updatedAt"]
    unchanged = (
        "id",
        "userId",
        "isPublic",
        "viewCount",
        "forkCount",
        "forkedFrom",
        "createdAt",
    )
    assert {k: patched[k] for k in unchanged} == {k: loop[k] for k in unchanged}
    assert patched["iconSequence"] == loop["iconSequence"]
    got = await (await client.get(f"/api/loops/{loop['id']}", headers=bearer(token))).json()
    assert patched == {k: v for k, v in got.items() if k != "samples"}
    # A client opening the document now finds the write in it.
    live = await connect(loop["id"], token=token)
    content = loop_doc_to_content(live.doc)
    assert content["name"] == "Patched" and content["chordProgression"] == CHORDS


async def test_a_content_patch_reaches_a_live_client_in_two_transactions(
    client: TestClient, transactions: TransactionLog, connect: ClientFactory
) -> None:
    session = await (await client.post("/api/auth/anonymous")).json()
    token = session["token"]
    warm = await create_loop(client, token)
    await counted_patch(client, transactions, f"/api/loops/{warm['id']}", {"name": "Warm"}, token)
    loop = await create_loop(client, token)
    live = await connect(loop["id"], token=token)

    patched, ran, invalidations = await counted_patch(
        client, transactions, f"/api/loops/{loop['id']}", {"chordProgression": CHORDS}, token
    )

    # The open room answers the role and holds the document: the log's commit and the fold.
    assert len(ran) <= 2, "\n\n".join("\n".join(t) for t in ran)
    assert invalidations == 1
    assert patched["chordProgression"] == CHORDS and patched["name"] == loop["name"]
    await live.wait_for(lambda: loop_doc_to_content(live.doc)["chordProgression"] == CHORDS)
