"""Several document services on one database (in one process, each its own "instance"):
snapshots that merge instead of overwriting, the bus fan-out, catch-up after missed messages,
the update log's behaviour when the database refuses writes, and the snapshot cadence.
Two real server processes are in tests/process/test_cluster_process.py."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from pycrdt import Doc, Map
from sqlalchemy import delete, func, select, text

from bus import BusState, MemoryBus, MemoryHub
from music.kinds import DocKind
from music.roles import Role
from musicplayground.app import realtime_limits
from realtime.errors import RealtimeError
from realtime.persistence import SnapshotOutcome
from realtime.rooms import Room, Session, TokenBucket
from realtime.service import DocumentService, RealtimeLimits
from settings import Settings
from storage import document_store as stored
from storage.database import Database
from storage.models import Collaborator, DocumentUpdate, Loop
from storage.update_log import UpdateLog
from storage.users import create_anonymous_user
from tests.helpers import eventually
from tests.storage.test_document_store import make_documents

LOOP = DocKind.LOOP


@dataclass
class RecordingTransport:
    """The rooms' transport without sockets: records what each session would receive."""

    sent: list[tuple[str, str, Any]] = field(default_factory=list)  # (sid, event, data)
    disconnected: list[tuple[str, str]] = field(default_factory=list)  # (sid, code)

    def send(self, namespace: str, sessions: Iterable[Session], event: str, data: Any) -> None:
        for session in sessions:
            self.sent.append((session.sid, event, data))

    async def disconnect(self, namespace: str, session: Session, code: str, message: str) -> None:
        self.disconnected.append((session.sid, code))

    def updates_for(self, sid: str) -> list[bytes]:
        return [data for to, event, data in self.sent if to == sid and event == "sync-update"]

    def bench_received(self, sid: str) -> dict[str, Any]:
        """The ``bench`` map of everything relayed to ``sid``."""
        doc: Doc[Any] = Doc()
        for update in self.updates_for(sid):
            doc.apply_update(update)
        return dict(doc.get("bench", type=Map))


@dataclass
class Instance:
    service: DocumentService
    transport: RecordingTransport
    update_log: UpdateLog

    def session(self, sid: str, role: Role = Role.OWNER) -> Session:
        return Session(sid, uuid.uuid4(), sid, role, None, TokenBucket(1000))

    async def join(self, doc_id: uuid.UUID, sid: str, role: Role = Role.OWNER) -> tuple[Room, Session]:
        room = await self.service.open_room(LOOP, doc_id)
        session = self.session(sid, role)
        self.service.join(room, session)
        return room, session

    async def committed_edit(self, room: Room, session: Session, key: str, value: Any) -> None:
        """``session`` sets ``bench[key] = value``; returns once it is in the update log."""
        committed = self.update_log.entries
        self.service.client_update(room, session, edit(key, value))
        await eventually(lambda: self.update_log.entries > committed)


@asynccontextmanager
async def instance(
    database_url: str, hub: MemoryHub | None, *, limits: RealtimeLimits | None = None, **log_options: Any
) -> AsyncIterator[Instance]:
    """A database, update log, bus and document service, like one server process."""
    async with AsyncExitStack() as stack:
        db = await stack.enter_async_context(Database(database_url))
        update_log = await stack.enter_async_context(UpdateLog(db, **log_options))
        bus = await stack.enter_async_context(MemoryBus(hub=hub if hub is not None else MemoryHub()))
        service = DocumentService(db, update_log, limits or realtime_limits(Settings()), bus=bus)
        transport = RecordingTransport()
        service.attach_transport(transport)
        await stack.enter_async_context(service)
        yield Instance(service, transport, update_log)


async def new_loop(database_url: str) -> uuid.UUID:
    async with Database(database_url) as db:
        (doc_id,) = await make_documents(db)
    return doc_id


def edit(key: str, value: Any) -> bytes:
    """A Yjs update setting ``bench[key] = value`` from a client of its own."""
    doc: Doc[Any] = Doc()
    doc.get("bench", type=Map)[key] = value
    return doc.get_update()


def bench(room: Room) -> dict[str, Any]:
    return dict(room.doc.get("bench", type=Map))


async def stored_bench(database_url: str, doc_id: uuid.UUID) -> dict[str, Any]:
    async with Database(database_url) as db, db.session() as session:
        found = await stored.load_document(session, resource_type="loop", resource_id=doc_id)
    assert found is not None and found.state is not None
    doc: Doc[Any] = Doc()
    doc.apply_update(found.state)
    for _, update in found.updates:
        doc.apply_update(update)
    return dict(doc.get("bench", type=Map))


async def test_joins_of_one_loop_turn_send_the_members_once(database_url: str) -> None:
    """The sockets of a join storm resume together once their room has loaded: everyone gets
    the whole members list once, not once per joiner."""
    doc_id = await new_loop(database_url)
    async with instance(database_url, None) as a:
        room = await a.service.open_room(LOOP, doc_id)
        for sid in ("s1", "s2", "s3", "s4"):
            a.service.join(room, a.session(sid))
        assert not [sent for sent in a.transport.sent if sent[1] == "presence"]  # not yet: at the turn's end
        await asyncio.sleep(0)
        presence = [(to, data) for to, event, data in a.transport.sent if event == "presence"]
        assert sorted(to for to, _ in presence) == ["s1", "s2", "s3", "s4"]
        assert all(len(data["members"]) == 4 for _, data in presence)  # a user each
        await a.service.leave(room, room.sessions["s4"])
        await asyncio.sleep(0)
        latest = [data for to, event, data in a.transport.sent if event == "presence" and to == "s1"][-1]
        assert len(latest["members"]) == 3


async def test_snapshots_of_two_instances_merge_instead_of_overwriting(database_url: str) -> None:
    doc_id = await new_loop(database_url)
    # No shared hub: the instances never hear each other, the worst case for the row.
    async with instance(database_url, None) as a, instance(database_url, None) as b:
        room_a, alice = await a.join(doc_id, "alice")
        room_b, bob = await b.join(doc_id, "bob")
        await a.committed_edit(room_a, alice, "from-a", 1)
        assert await a.service.snapshot(room_a) is SnapshotOutcome.SAVED  # folds and trims the log

        await b.committed_edit(room_b, bob, "from-b", 2)
        # B never saw A's entry, which A's snapshot has deleted from the log: B must merge
        # the row's state rather than overwrite it.
        assert await b.service.snapshot(room_b) is SnapshotOutcome.MERGED
        assert bench(room_b) == {"from-a": 1, "from-b": 2}
        assert await stored_bench(database_url, doc_id) == {"from-a": 1, "from-b": 2}
        assert b.transport.bench_received("bob") == {"from-a": 1}  # live, when it was merged

        assert await a.service.snapshot(room_a) is SnapshotOutcome.MERGED
        assert bench(room_a) == {"from-a": 1, "from-b": 2}
        assert await stored_bench(database_url, doc_id) == {"from-a": 1, "from-b": 2}


async def test_a_snapshot_folds_in_log_entries_its_room_never_saw(database_url: str) -> None:
    doc_id = await new_loop(database_url)
    async with instance(database_url, None) as a, instance(database_url, None) as b:
        room_a, alice = await a.join(doc_id, "alice")
        room_b, bob = await b.join(doc_id, "bob")
        await a.committed_edit(room_a, alice, "from-a", 1)
        await b.committed_edit(room_b, bob, "from-b", 2)
        assert room_a.logged_ids and not room_a.logged_ids & room_b.logged_ids
        # The log holds A's own entry (A skips reading it back) and B's, which A never heard of.
        assert await a.service.snapshot(room_a) is SnapshotOutcome.SAVED
        assert bench(room_a) == {"from-a": 1, "from-b": 2}
        assert await stored_bench(database_url, doc_id) == {"from-a": 1, "from-b": 2}
        assert room_a.logged_ids == set()  # all of it is before the new position now
        assert a.transport.bench_received("alice") == {"from-b": 2}  # relayed to A's clients
        async with Database(database_url) as db, db.session() as session:
            assert not await stored.has_unsnapshotted_updates(
                session, resource_type="loop", resource_id=doc_id
            )
        assert await log_entries(database_url) == 0  # the folded entries were trimmed


async def test_a_snapshot_of_a_deleted_row_drops_the_room_and_its_sockets(database_url: str) -> None:
    doc_id = await new_loop(database_url)
    async with instance(database_url, None) as a:
        room, alice = await a.join(doc_id, "alice")
        a.service.client_update(room, alice, edit("k", 1))
        async with Database(database_url) as db, db.write_session() as session:
            await session.execute(delete(Loop).where(Loop.id == doc_id))
        assert await a.service.snapshot(room) is SnapshotOutcome.DELETED
        assert room.closed and a.service.loaded(LOOP, doc_id) is None
        assert a.transport.disconnected == [("alice", "document_deleted")]


async def test_updates_awareness_members_and_events_reach_the_other_instance(database_url: str) -> None:
    doc_id = await new_loop(database_url)
    hub = MemoryHub()
    async with instance(database_url, hub) as a, instance(database_url, hub) as b:
        room_a, alice = await a.join(doc_id, "alice")
        room_b, _bob = await b.join(doc_id, "bob")
        await eventually(lambda: len(room_a.members) == 2 and len(room_b.members) == 2)
        a.service.client_update(room_a, alice, edit("live", 1))
        await eventually(lambda: bench(room_b) == {"live": 1})
        assert any(bench_of(u) == {"live": 1} for u in b.transport.updates_for("bob"))
        # Awareness: y-protocols encoding of client 7's state, relayed to B's sockets.
        from pycrdt import Awareness

        peer = Awareness(Doc(client_id=7))
        peer.set_local_state({"user": {"name": "alice"}, "cursor": {"bar": 1}})
        a.service.client_awareness(room_a, alice, peer.encode_awareness_update([peer.client_id]))
        await eventually(lambda: peer.client_id in room_b.awareness.states)
        assert any(to == "bob" and event == "awareness-update" for to, event, _ in b.transport.sent)
        # A named event (issue 9's comments) reaches every socket of every instance.
        await a.service.broadcast(LOOP, doc_id, "comment", {"text": "nice"})
        await eventually(lambda: ("bob", "comment", {"text": "nice"}) in b.transport.sent)
        assert ("alice", "comment", {"text": "nice"}) in a.transport.sent
        # Leaving removes the member and their cursor on the other instance too.
        await a.service.leave(room_a, alice)
        await eventually(lambda: len(room_b.members) == 1 and peer.client_id not in room_b.awareness.states)
        # Deleting on A drops B's sockets.
        await a.service.document_deleted(LOOP, doc_id)
        await eventually(lambda: b.transport.disconnected == [("bob", "document_deleted")])


def bench_of(update: bytes) -> dict[str, Any]:
    doc: Doc[Any] = Doc()
    doc.apply_update(update)
    return dict(doc.get("bench", type=Map))


async def test_the_room_limit_counts_every_instance(database_url: str) -> None:
    doc_id = await new_loop(database_url)
    hub = MemoryHub()
    limits = realtime_limits(Settings(max_clients_per_room=2))
    async with (
        instance(database_url, hub, limits=limits) as a,
        instance(database_url, hub, limits=limits) as b,
    ):
        await a.join(doc_id, "a1")
        room_b, _ = await b.join(doc_id, "b1")
        await eventually(lambda: len(room_b.members) == 2)
        with pytest.raises(RealtimeError) as refused:
            await b.join(doc_id, "b2")
        assert refused.value.code == "room_full"


async def test_a_missed_message_is_caught_up_from_storage(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc_id = await new_loop(database_url)
    hub = MemoryHub()
    async with instance(database_url, hub) as a, instance(database_url, hub) as b:
        room_a, alice = await a.join(doc_id, "alice")
        room_b, _bob = await b.join(doc_id, "bob")
        # A's bus "loses" one message (pub/sub is at most once).
        bus_a = a.service.bus
        real_send = bus_a._send
        await asyncio.sleep(0.05)  # the members and hello messages of the joins went out
        before = bus_a.published
        monkeypatch.setattr(bus_a, "_send", lambda channel, raw: None)
        a.service.client_update(room_a, alice, edit("lost", 1))
        await eventually(lambda: bus_a.published > before)
        monkeypatch.setattr(bus_a, "_send", real_send)
        assert bench(room_b) == {}
        a.service.client_update(room_a, alice, edit("next", 2))
        # The next message shows a gap in A's numbering: B catches up from the log.
        await eventually(lambda: bench(room_b) == {"lost": 1, "next": 2})
        assert b.service.catch_ups >= 1


async def _refuse_log_writes(database_url: str, refuse: bool, operation: str = "INSERT") -> None:
    """Make the database refuse (or take again) ``operation`` on the update log, by a trigger."""
    name = f"refuse_log_{operation.lower()}"
    async with Database(database_url) as db, db.write_session() as session:
        if db.dialect == "sqlite":
            if refuse:
                await session.execute(
                    text(
                        f"CREATE TRIGGER {name} BEFORE {operation} ON document_updates "
                        "BEGIN SELECT RAISE(ABORT, 'writes refused by the test'); END"
                    )
                )
            else:
                await session.execute(text(f"DROP TRIGGER {name}"))
        elif refuse:
            await session.execute(
                text(
                    f"CREATE FUNCTION {name}() RETURNS trigger AS $$ BEGIN "
                    "RAISE EXCEPTION 'writes refused by the test'; END $$ LANGUAGE plpgsql"
                )
            )
            await session.execute(
                text(
                    f"CREATE TRIGGER {name} BEFORE {operation} ON document_updates "
                    f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
                )
            )
        else:
            await session.execute(text(f"DROP TRIGGER {name} ON document_updates"))
            await session.execute(text(f"DROP FUNCTION {name}()"))


async def log_entries(database_url: str) -> int:
    async with Database(database_url) as db, db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(DocumentUpdate)) or 0)


async def test_a_snapshot_stands_when_trimming_its_log_fails(database_url: str) -> None:
    doc_id = await new_loop(database_url)
    async with instance(database_url, None) as a:
        room, alice = await a.join(doc_id, "alice")
        await a.committed_edit(room, alice, "one", 1)
        await _refuse_log_writes(database_url, True, "DELETE")
        try:
            assert await a.service.snapshot(room) is SnapshotOutcome.SAVED
        finally:
            await _refuse_log_writes(database_url, False, "DELETE")
        assert await stored_bench(database_url, doc_id) == {"one": 1}
        assert room.persisted_version == room.version  # stored: not dirty any more
        assert await log_entries(database_url) == 1  # folded in, not deleted: readers skip it
        await a.committed_edit(room, alice, "two", 2)
        assert await a.service.snapshot(room) is SnapshotOutcome.SAVED
        assert await log_entries(database_url) == 0  # the next snapshot deletes both
        assert await stored_bench(database_url, doc_id) == {"one": 1, "two": 2}


async def test_an_edit_the_database_refuses_is_retried_until_durable_never_half_applied(
    database_url: str,
) -> None:
    doc_id = await new_loop(database_url)
    hub = MemoryHub()
    async with instance(database_url, hub, max_pending=3) as a, instance(database_url, hub) as b:
        room_a, alice = await a.join(doc_id, "alice")
        _room_a2, carol = await a.join(doc_id, "carol")
        room_b, _bob = await b.join(doc_id, "bob")
        await _refuse_log_writes(database_url, True)
        try:
            a.service.client_update(room_a, alice, edit("pending", 1))
            await eventually(lambda: a.update_log.retries >= 2)
            # Not durable, so not relayed: neither the local peer nor the other instance has it.
            assert a.transport.updates_for("carol") == [] and bench(room_b) == {}
            # The bounded queue fills; further edits are refused BEFORE being applied.
            a.service.client_update(room_a, alice, edit("p2", 2))
            a.service.client_update(room_a, alice, edit("p3", 3))
            with pytest.raises(RealtimeError) as full:
                a.service.client_update(room_a, carol, edit("refused", 4))
            assert full.value.code == "storage_backlog"
            assert "refused" not in bench(room_a)
        finally:
            await _refuse_log_writes(database_url, False)
        # The database takes writes again: the queued edits become durable, then are relayed.
        await eventually(lambda: bench(room_b) == {"pending": 1, "p2": 2, "p3": 3}, timeout=15)
        assert a.update_log.failed_entries == 0
        assert {k for u in a.transport.updates_for("carol") for k in bench_of(u)} == {"pending", "p2", "p3"}
        assert await stored_bench(database_url, doc_id) == {"pending": 1, "p2": 2, "p3": 3}


async def test_sustained_editing_snapshots_once_per_interval(database_url: str) -> None:
    doc_id = await new_loop(database_url)
    interval = 0.6
    # Small edits of a non-listing field: the quiet cadence, here the same interval.
    limits = realtime_limits(Settings(snapshot_interval=interval, snapshot_quiet_interval=interval))
    async with instance(database_url, None, limits=limits) as a:
        room, alice = await a.join(doc_id, "alice")
        started = time.monotonic()
        i = 0
        while len(a.service.snapshots) < 4:
            a.service.client_update(room, alice, edit(f"k{i}", i))
            i += 1
            await asyncio.sleep(0.02)
            assert time.monotonic() - started < 60, "no periodic snapshots"
        times = [at for _, at, _ in a.service.snapshots]
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        # Not every maintenance tick (0.3 s here): each snapshot one interval after the last.
        assert all(gap >= interval * 0.95 for gap in gaps), gaps


async def test_no_instance_serves_a_cached_row_once_another_has_newer_edits(database_url: str) -> None:
    from realtime.read_cache import CachedDocument

    doc_id = await new_loop(database_url)
    hub = MemoryHub()
    async with instance(database_url, hub) as a, instance(database_url, hub) as b:
        cache = b.service.read_cache
        cache.put("loop", doc_id, CachedDocument(uuid.uuid4(), True, b"{}"), read_at=cache.generation())
        assert cache.get("loop", doc_id) is not None
        room_a, alice = await a.join(doc_id, "alice")
        a.service.client_update(room_a, alice, edit("newer", 1))
        await eventually(lambda: cache.get("loop", doc_id) is None)
        # An access change on A drops it on B as well.
        cache.put("loop", doc_id, CachedDocument(uuid.uuid4(), True, b"{}"), read_at=cache.generation())
        await a.service.access_changed(LOOP, doc_id)
        await eventually(lambda: cache.get("loop", doc_id) is None)


async def test_awareness_on_the_bus_is_coalesced_per_client(database_url: str) -> None:
    from pycrdt import Awareness

    from realtime.cluster import ClusterMessage

    doc_id = await new_loop(database_url)
    hub = MemoryHub()
    async with instance(database_url, hub) as a, instance(database_url, hub) as b:
        room_a, alice = await a.join(doc_id, "alice")
        room_b, _bob = await b.join(doc_id, "bob")
        listener = MemoryBus(hub=hub)
        async with listener:
            seen: list[float] = []
            await listener.subscribe(
                a.service.relay.channel(LOOP, doc_id),
                lambda e: (
                    seen.append(time.monotonic())
                    if ClusterMessage.decode(e.data).kind == "awareness"
                    else None
                ),
            )
            cursor = Awareness(Doc(client_id=11))  # a Yjs (uint32) client id
            started = time.monotonic()
            for step in range(200):  # a cursor dragged at ~200 moves per second
                cursor.set_local_state({"cursor": {"bar": 0, "step": step}})
                a.service.client_awareness(room_a, alice, cursor.encode_awareness_update([cursor.client_id]))
                await asyncio.sleep(0.005)
            elapsed = time.monotonic() - started
            await eventually(
                lambda: room_b.awareness.states.get(cursor.client_id, {}).get("cursor", {}).get("step") == 199
            )
        # Every move reached the other instance's state, in at most ~20 messages a second
        # (one interval per 50 ms, plus the first move sent at once, the trailing flush after the
        # last one and the join's own awareness message).
        assert len(seen) <= elapsed * 20 + 4, (len(seen), elapsed)
        assert len(seen) >= 2


async def test_a_loaded_room_answers_joins_from_access_rules_the_bus_keeps_current(database_url: str) -> None:
    """A socket joining a loaded room needs no query for its role: the room holds the access
    rules, and an access change announced on any instance reloads them everywhere. While the
    bus is not up the rules are not trusted and the database answers."""
    doc_id = await new_loop(database_url)
    hub = MemoryHub()
    async with Database(database_url) as db:
        async with db.write_session() as session:
            stranger = (await create_anonymous_user(session)).id
        async with instance(database_url, hub) as a, instance(database_url, hub) as b:
            room_b, _ = await b.join(doc_id, "bob")
            assert room_b.access is not None and room_b.access.collaborators == {}
            assert await b.service.role_of(LOOP, doc_id, user_id=stranger, share_token=None) is None
            async with db.write_session() as session:
                session.add(
                    Collaborator(resource_type="loop", resource_id=doc_id, user_id=stranger, role="editor")
                )
            # Not announced yet: B still answers from the rules it holds.
            assert await b.service.role_of(LOOP, doc_id, user_id=stranger, share_token=None) is None
            await a.service.access_changed(LOOP, doc_id)  # what every REST access change calls
            await eventually(lambda: room_b.access is not None and stranger in room_b.access.collaborators)
            assert await b.service.role_of(LOOP, doc_id, user_id=stranger, share_token=None) is Role.EDITOR
            async with db.write_session() as session:
                await session.execute(delete(Collaborator).where(Collaborator.user_id == stranger))
            b.service.bus.state = BusState.DOWN  # announcements may be lost: ask the database
            assert await b.service.role_of(LOOP, doc_id, user_id=stranger, share_token=None) is None
            b.service.bus.state = BusState.UP


async def test_a_renamed_or_deleted_user_is_dropped_from_every_instances_name_cache(
    database_url: str,
) -> None:
    hub = MemoryHub()
    async with Database(database_url) as db:
        async with db.write_session() as session:
            user = await create_anonymous_user(session)
            user.display_name = "Before"
        async with instance(database_url, hub) as a, instance(database_url, hub) as b:
            names = await asyncio.gather(*(b.service.shown_name(user.id) for _ in range(5)))
            assert names == ["Before"] * 5
            async with db.write_session() as session:
                await session.execute(text("UPDATE users SET display_name = 'After'"))
            assert await b.service.shown_name(user.id) == "Before"  # cached until announced
            a.service.user_changed(user.id)  # what PATCH /api/users/me calls
            await eventually(lambda: b.service.names.cached(user.id) is None)
            assert await b.service.shown_name(user.id) == "After"
            async with db.write_session() as session:
                await session.execute(text("DELETE FROM users"))
            a.service.user_changed(user.id)
            await eventually(lambda: b.service.names.cached(user.id) is None)
            assert await b.service.shown_name(user.id) is None


async def test_names_asked_for_together_are_read_together(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A join storm asks for many users' names in one loop turn: each gets its own answer
    (None for an account that does not exist), from one query per batch of users."""
    from realtime import names as live

    hub = MemoryHub()
    async with Database(database_url) as db:
        users = []
        async with db.write_session() as session:
            for i in range(7):
                user = await create_anonymous_user(session)
                user.display_name = f"Player {i}"
                users.append(user.id)
        ghost = uuid.uuid4()
        async with instance(database_url, hub) as a:
            reads = 0
            real_read = live.shown_names

            async def counting_read(db: Any, user_ids: Any) -> Any:
                nonlocal reads
                reads += 1
                return await real_read(db, user_ids)

            monkeypatch.setattr(live, "shown_names", counting_read)
            asked = [*users, ghost, *users]  # some twice: one lookup each
            names = await asyncio.gather(*(a.service.shown_name(user_id) for user_id in asked))
            assert names == [*(f"Player {i}" for i in range(7)), None, *(f"Player {i}" for i in range(7))]
            assert reads == 1
            a.service.names.forget(None)
            monkeypatch.setattr(live, "MAX_NAMES_PER_READ", 3)
            names = await asyncio.gather(*(a.service.shown_name(user_id) for user_id in users))
            assert names == [f"Player {i}" for i in range(7)]
            assert reads == 1 + 3  # 7 users, 3 a query
