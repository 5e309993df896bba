"""Content events written again from the update log (events.content_recovery), on both
databases: log entries stamped at chosen times, then recovery passes, as a restarted instance
(or a second one) runs them. The process tests kill a real server; these pin down the windows."""

from __future__ import annotations

import itertools
import math
import time
import uuid
from datetime import UTC, datetime

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

from events.content_changes import write_content_events
from events.content_recovery import LOG_LAG_SECONDS, SLICE_SECONDS, ContentRecovery
from music.kinds import DocKind
from rest.context import REST_CONTEXT
from storage.database import Database
from storage.document_store import append_updates
from storage.models import DocumentUpdate, OutboxEvent
from tests.helpers import sign_up
from tests.sharing_helpers import create_doc

WINDOW = 10.0
EMPTY_UPDATE = b"\x00\x00"  # a valid Yjs update that changes nothing: only its stamp matters here


async def log_edit(db: Database, doc_id: uuid.UUID, author: uuid.UUID | None, at: float) -> None:
    """An update log entry of ``doc_id`` by ``author``, stamped ``at`` (epoch seconds)."""
    async with db.write_session() as session:
        [entry_id] = await append_updates(session, [("loop", doc_id, EMPTY_UPDATE, author)])
        stamp = datetime.fromtimestamp(at, UTC)
        await session.execute(
            update(DocumentUpdate).where(DocumentUpdate.id == entry_id).values(created_at=stamp)
        )


async def live_event(db: Database, doc_id: uuid.UUID, author: uuid.UUID, window: int) -> None:
    """The event the live path writes for an edit of ``window``."""
    async with db.write_session() as session:
        await write_content_events(
            session, {(DocKind.LOOP, doc_id, window): ({author}, datetime.now(UTC))}, WINDOW
        )


async def events_of(db: Database, doc_id: uuid.UUID) -> list[tuple[str, list[str]]]:
    async with db.session() as session:
        rows = await session.scalars(
            select(OutboxEvent)
            .where(OutboxEvent.resource_id == doc_id, OutboxEvent.kind == "loop.content_changed")
            .order_by(OutboxEvent.coalesce_key)
        )
        return [(str(e.coalesce_key).rsplit(":", 1)[1], sorted(e.data["editorIds"])) for e in rows]


async def test_recovery_writes_the_missing_windows_once(client: TestClient) -> None:
    db = client.app[REST_CONTEXT].db
    ann, bob = await sign_up(client), await sign_up(client)
    ann_id, bob_id = uuid.UUID(ann["user"]["id"]), uuid.UUID(bob["user"]["id"])
    docs = [uuid.UUID((await create_doc(client, "loops", ann["token"]))["id"]) for _ in range(3)]
    told, continued, lost = docs
    w = math.floor((time.time() - 600) / WINDOW)  # ten minutes ago: every pass reads it
    start = (w + 1) * WINDOW  # where the next window begins

    # Told live in window w; the log stamped its last edit just past the window's end.
    await live_event(db, told, ann_id, w)
    await log_edit(db, told, ann_id, start - 2)
    await log_edit(db, told, ann_id, start + LOG_LAG_SECONDS / 2)
    # Told live in window w, then edited on into window w + 1, whose event was lost.
    await live_event(db, continued, ann_id, w)
    await log_edit(db, continued, ann_id, start - 1)
    await log_edit(db, continued, bob_id, start + 4)
    # Never told: two editors (and a share link, no id) in window w.
    await log_edit(db, lost, ann_id, w * WINDOW + 1)
    await log_edit(db, lost, bob_id, w * WINDOW + 2)
    await log_edit(db, lost, None, w * WINDOW + 3)
    # A document deleted since: nothing to tell.
    await log_edit(db, uuid.uuid4(), ann_id, w * WINDOW + 1)

    one, other = (ContentRecovery(db, window=WINDOW, lookback=3600.0) for _ in range(2))
    await one.run_pass()
    assert await events_of(db, told) == [(str(w), [str(ann_id)])]
    assert await events_of(db, continued) == [(str(w), [str(ann_id)]), (str(w + 1), [str(bob_id)])]
    assert await events_of(db, lost) == [(str(w), sorted([str(ann_id), str(bob_id)]))]
    assert one.recovered >= 2

    before = {doc: await events_of(db, doc) for doc in docs}
    await one.run_pass()  # the next slice of the same instance
    await other.run_pass()  # another instance (or a restart) reading the whole lookback
    assert {doc: await events_of(db, doc) for doc in docs} == before


async def test_a_long_lookback_is_read_slice_by_slice(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The startup pass over hours of log holds one slice's windows at a time, slices end on
    window boundaries, and every slice's lost windows are written."""
    db = client.app[REST_CONTEXT].db
    ann = await sign_up(client)
    ann_id = uuid.UUID(ann["user"]["id"])
    doc = uuid.UUID((await create_doc(client, "loops", ann["token"]))["id"])
    now = time.time()
    windows = [math.floor((now - ago) / WINDOW) for ago in (3000, 1500, 400)]  # far apart
    for w in windows:
        await log_edit(db, doc, ann_id, w * WINDOW + 1)
        await log_edit(db, doc, ann_id, w * WINDOW + WINDOW - 1)

    recovery = ContentRecovery(db, window=WINDOW, lookback=3600.0)
    read = recovery._read_log
    spans: list[tuple[datetime, datetime]] = []

    async def recorded(since: datetime, until: datetime):  # type: ignore[no-untyped-def]
        spans.append((since, until))
        return await read(since, until)

    monkeypatch.setattr(recovery, "_read_log", recorded)
    await recovery.run_pass()

    assert await events_of(db, doc) == [(str(w), [str(ann_id)]) for w in windows]
    step = math.ceil(SLICE_SECONDS / WINDOW) * WINDOW
    assert len(spans) >= 9  # ~2,985 s of log from its first entry (3,000 s ago), 300 s a slice
    assert spans[0][0].timestamp() <= windows[0] * WINDOW + 1  # not before the first entry's slice
    for (since, until), (next_since, _) in itertools.pairwise(spans):
        assert until == next_since  # contiguous, no gap, no overlap
        assert (until - since).total_seconds() <= step
        assert round(until.timestamp() / step) * step == pytest.approx(until.timestamp(), abs=1e-3)
