"""Stored Yjs documents: state + update log, snapshots, and migration 0002, on both backends."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic import command
from pycrdt import Doc, Map
from sqlalchemy import func, select, text
from sqlalchemy.engine import Connection

from storage import document_store as store
from storage.access import load_access_rules
from storage.database import Database, run_steps
from storage.library import create_document
from storage.models import Base, Collaborator, DocumentUpdate, Loop, Song, utcnow
from storage.schema import alembic_config, current_revision, head_revision, upgrade
from storage.users import create_anonymous_user

LOOP_VALUES: dict[str, Any] = {
    "name": "Pop I-V-vi-IV",
    "length": 4,
    "bpm": 120,
    "color": "#FFD11A",
    "chord_progression": [{"bar": 0, "chord": "C"}],
    "icon_sequence": [],
    "is_public": False,
}
SONG_VALUES: dict[str, Any] = {
    "name": "First song",
    "bpm": 110,
    "time_signature": "4/4",
    "timeline": [],
    "total_bars": 0,
    "is_public": False,
}


async def make_documents(db: Database, *, loops: int = 1, songs: int = 0) -> list[uuid.UUID]:
    """A new user owning ``loops`` loops then ``songs`` songs; their ids."""
    async with db.write_session() as session:
        user = await create_anonymous_user(session)
        ids = []
        for _ in range(loops):
            loop = await create_document(session, Loop, user_id=user.id, values=dict(LOOP_VALUES), quota=100)
            ids.append(loop.id)
        for _ in range(songs):
            song = await create_document(session, Song, user_id=user.id, values=dict(SONG_VALUES), quota=100)
            ids.append(song.id)
    return ids


async def load(db: Database, resource_id: uuid.UUID, resource_type: str = "loop") -> store.StoredDocument:
    async with db.session() as session:
        stored = await store.load_document(session, resource_type=resource_type, resource_id=resource_id)
    assert stored is not None
    return stored


async def append(db: Database, entries: list[tuple[str, uuid.UUID, bytes]]) -> list[int]:
    async with db.write_session() as session:
        return await store.append_updates(session, entries)


async def snapshot(
    db: Database, resource_id: uuid.UUID, *, state: bytes, position: int, **columns: Any
) -> bool:
    """Store a snapshot, then trim the log it folded in (as a live room's snapshot does)."""
    saved = await db.write_steps(
        store.save_snapshot(
            resource_type="loop", resource_id=resource_id, state=state, position=position, columns=columns
        )
    )
    await db.write_steps(
        store.trim_document_log(resource_type="loop", resource_id=resource_id, up_to=position, limit=None)
    )
    return saved


async def log_count(db: Database, resource_id: uuid.UUID | None = None) -> int:
    query = select(func.count()).select_from(DocumentUpdate)
    if resource_id is not None:
        query = query.where(DocumentUpdate.resource_id == resource_id)
    async with db.session() as session:
        return int(await session.scalar(query) or 0)


async def test_fresh_loop_has_no_state_and_no_updates(database_url: str) -> None:
    async with Database(database_url) as db:
        (loop_id,) = await make_documents(db)
        stored = await load(db, loop_id)
        assert stored == store.StoredDocument(state=None, position=0, updates=[])


async def test_appended_updates_load_in_order_with_their_ids(database_url: str) -> None:
    async with Database(database_url) as db:
        loop_id, other_id, song_id = await make_documents(db, loops=2, songs=1)
        ids = await append(
            db,
            [
                ("loop", loop_id, b"one"),
                ("loop", other_id, b"other"),
                ("loop", loop_id, b"two"),
                ("song", song_id, b"song"),
                ("loop", loop_id, b"three"),
            ],
        )
        assert len(ids) == 5 and ids == sorted(ids) and len(set(ids)) == 5
        stored = await load(db, loop_id)
        assert stored.state is None and stored.position == 0
        assert stored.updates == [(ids[0], b"one"), (ids[2], b"two"), (ids[4], b"three")]
        assert (await load(db, other_id)).updates == [(ids[1], b"other")]
        assert (await load(db, song_id, "song")).updates == [(ids[3], b"song")]
        # The same id under the other resource type is another document.
        async with db.session() as session:
            assert await store.load_document(session, resource_type="song", resource_id=loop_id) is None
            assert await run_steps(
                session,
                store.updates_after(resource_type="loop", resource_id=loop_id, position=ids[0]),
            ) == [(ids[2], b"two"), (ids[4], b"three")]
        assert await append(db, []) == []


async def test_snapshot_folds_the_log_into_the_row(database_url: str) -> None:
    async with Database(database_url) as db:
        loop_id, other_id = await make_documents(db, loops=2)
        ids = await append(db, [("loop", loop_id, bytes([i])) for i in range(3)])
        (other_entry,) = await append(db, [("loop", other_id, b"keep")])
        later = await append(db, [("loop", loop_id, b"later")])
        updated_at = utcnow()

        assert await snapshot(
            db,
            loop_id,
            state=b"STATE",
            position=ids[-1],
            name="Renamed",
            length=8,
            chord_progression=[{"bar": 4, "chord": "G"}],
            updated_at=updated_at,
        )

        stored = await load(db, loop_id)
        assert stored.state == b"STATE"
        assert stored.position == ids[-1]
        assert stored.updates == [(later[0], b"later")]  # entries after the position stay
        assert await log_count(db, loop_id) == 1
        assert (await load(db, other_id)).updates == [(other_entry, b"keep")]
        async with db.session() as session:
            row = await session.get(Loop, loop_id)
            assert row is not None
            assert row.name == "Renamed" and row.length == 8
            assert row.chord_progression == [{"bar": 4, "chord": "G"}]
            assert row.doc_state == b"STATE" and row.doc_log_position == ids[-1]
            assert row.updated_at.replace(tzinfo=updated_at.tzinfo) == updated_at


async def test_trimming_deletes_folded_entries_a_batch_at_a_time(database_url: str) -> None:
    async with Database(database_url) as db:
        loop_id, other_id = await make_documents(db, loops=2)
        ids = await append(db, [("loop", loop_id, bytes([i])) for i in range(7)])
        (other_entry,) = await append(db, [("loop", other_id, b"keep")])
        # An entry under the other resource type is another document's, even with this id.
        (song_entry,) = await append(db, [("song", loop_id, b"song")])
        assert await db.write_steps(
            store.save_snapshot(
                resource_type="loop", resource_id=loop_id, state=b"S", position=ids[4], columns={}
            )
        )
        # Saving folds in but does not delete: readers already skip entries up to the position.
        assert await log_count(db, loop_id) == 8
        assert (await load(db, loop_id)).updates == [(ids[5], bytes([5])), (ids[6], bytes([6]))]

        def trim(limit: int | None) -> store.Steps[int]:
            return store.trim_document_log(
                resource_type="loop", resource_id=loop_id, up_to=ids[4], limit=limit
            )

        assert [await db.write_steps(trim(2)) for _ in range(2)] == [2, 2]  # oldest first
        assert (await load(db, loop_id)).updates == [(ids[5], bytes([5])), (ids[6], bytes([6]))]
        async with db.session() as session:
            left = await session.scalars(
                select(DocumentUpdate.id).where(DocumentUpdate.resource_id == loop_id)
            )
            assert sorted(left) == [ids[4], ids[5], ids[6], song_entry]
        assert [await db.write_steps(trim(2)) for _ in range(2)] == [1, 0]  # up to the position only
        assert await log_count(db, loop_id) == 3  # the two later entries and the song's
        assert await db.write_steps(trim(None)) == 0
        assert (await load(db, loop_id)).updates == [(ids[5], bytes([5])), (ids[6], bytes([6]))]
        assert (await load(db, other_id)).updates == [(other_entry, b"keep")]
        after = functools.partial(store.log_after, resource_type="loop", resource_id=loop_id)
        assert await db.write_steps(after(position=ids[4])) == (2, ids[6])
        assert await db.write_steps(after(position=ids[6])) == (0, ids[6])  # none after: the position


async def test_snapshot_never_moves_backwards(database_url: str) -> None:
    async with Database(database_url) as db:
        (loop_id,) = await make_documents(db)
        ids = await append(db, [("loop", loop_id, b"a"), ("loop", loop_id, b"b")])
        assert await snapshot(db, loop_id, state=b"S2", position=ids[1], name="new")

        # A slower snapshotter that only saw the first update is refused and changes nothing.
        assert not await snapshot(db, loop_id, state=b"S1", position=ids[0], name="stale")
        stored = await load(db, loop_id)
        assert (stored.state, stored.position) == (b"S2", ids[1])
        async with db.session() as session:
            row = await session.get(Loop, loop_id)
            assert row is not None and row.name == "new"

        # The same position again is accepted (idempotent re-save).
        assert await snapshot(db, loop_id, state=b"S2'", position=ids[1])
        assert (await load(db, loop_id)).state == b"S2'"

        # A document that does not exist (any more) is refused too.
        assert not await snapshot(db, uuid.uuid4(), state=b"S", position=ids[1])

        with pytest.raises(ValueError, match="doc_log_position"):
            await snapshot(db, loop_id, state=b"S", position=ids[1], doc_log_position=0)


async def test_a_first_state_is_stored_only_once(database_url: str) -> None:
    async with Database(database_url) as db:
        (loop_id,) = await make_documents(db)

        async def first_state(state: bytes) -> bool:
            return await db.write_steps(
                store.save_snapshot(
                    resource_type="loop",
                    resource_id=loop_id,
                    state=state,
                    position=0,
                    columns={},
                    only_if_no_state=True,
                )
            )

        assert await first_state(b"A")
        assert not await first_state(b"B")  # another process got there first
        assert (await load(db, loop_id)).state == b"A"
        assert await snapshot(db, loop_id, state=b"C", position=0)  # ordinary snapshots go on


async def test_snapshot_updates_an_object_loaded_in_the_same_session(database_url: str) -> None:
    async with Database(database_url) as db:
        (loop_id,) = await make_documents(db)
        (entry,) = await append(db, [("loop", loop_id, b"a")])
        async with db.write_session() as session:
            row = await session.get(Loop, loop_id)
            assert row is not None and row.doc_log_position == 0
            assert await run_steps(
                session,
                store.save_snapshot(
                    resource_type="loop",
                    resource_id=loop_id,
                    state=b"S",
                    position=entry,
                    columns={"name": "Seen"},
                ),
            )
            assert (row.name, row.doc_state, row.doc_log_position) == ("Seen", b"S", entry)


async def test_has_unsnapshotted_updates(database_url: str) -> None:
    async with Database(database_url) as db:
        loop_id, song_id = await make_documents(db, loops=1, songs=1)

        async def pending(resource_type: str, resource_id: uuid.UUID) -> bool:
            async with db.session() as session:
                return await store.has_unsnapshotted_updates(
                    session, resource_type=resource_type, resource_id=resource_id
                )

        assert not await pending("loop", loop_id)
        ids = await append(db, [("loop", loop_id, b"a"), ("song", song_id, b"s")])
        assert await pending("loop", loop_id)
        assert await pending("song", song_id)
        assert not await pending("song", loop_id)
        assert await snapshot(db, loop_id, state=b"S", position=ids[0])
        assert not await pending("loop", loop_id)
        assert await pending("song", song_id)
        assert not await pending("loop", uuid.uuid4())


async def test_unknown_document_and_unknown_type(database_url: str) -> None:
    async with Database(database_url) as db:
        async with db.session() as session:
            for resource_type in ("loop", "song"):
                missing = await store.load_document(
                    session, resource_type=resource_type, resource_id=uuid.uuid4()
                )
                assert missing is None
            with pytest.raises(ValueError, match="unknown resource type"):
                await store.load_document(session, resource_type="sample", resource_id=uuid.uuid4())
        with pytest.raises(ValueError, match="unknown resource type"):
            await append(db, [("sample", uuid.uuid4(), b"x")])


async def _open_and_compare(db: Database) -> None:
    """``load_document_and_access`` answers what the session-based reads answer."""
    loop_id, other_id = await make_documents(db, loops=2)
    (song_id,) = await make_documents(db, loops=0, songs=1)
    folded = await append(db, [("loop", loop_id, b"folded")])
    assert await snapshot(db, loop_id, state=b"STATE", position=folded[0])
    ids = await append(
        db, [("loop", loop_id, b"one"), ("loop", other_id, b"other"), ("loop", loop_id, b"two")]
    )
    async with db.write_session() as session:
        editor, viewer = await create_anonymous_user(session), await create_anonymous_user(session)
        session.add(Collaborator(resource_type="loop", resource_id=loop_id, user_id=editor.id, role="editor"))
        session.add(Collaborator(resource_type="loop", resource_id=loop_id, user_id=viewer.id, role="viewer"))
        row = await session.get(Loop, loop_id)
        assert row is not None
        row.is_public, row.hidden_at = True, utcnow()

    opened = await store.load_document_and_access(db, resource_type="loop", resource_id=loop_id)
    assert opened is not None
    found, access = opened
    assert found == store.StoredDocument(
        state=b"STATE", position=folded[0], updates=[(ids[0], b"one"), (ids[2], b"two")]
    )
    assert found == await load(db, loop_id)
    async with db.session() as session:
        assert access == await load_access_rules(session, Loop, loop_id)
    assert access.collaborators == {editor.id: "editor", viewer.id: "viewer"}
    assert access.is_public and access.hidden
    assert all(isinstance(update, bytes) for _, update in found.updates)

    fresh = await store.load_document_and_access(db, resource_type="song", resource_id=song_id)
    assert fresh is not None
    assert fresh[0] == store.StoredDocument(state=None, position=0, updates=[])
    assert fresh[1].collaborators == {} and not fresh[1].hidden and not fresh[1].is_public
    # Unknown ids, and a loop's id asked for as a song, open nothing.
    assert await store.load_document_and_access(db, resource_type="loop", resource_id=uuid.uuid4()) is None
    assert await store.load_document_and_access(db, resource_type="song", resource_id=loop_id) is None


async def test_a_room_opens_from_one_read_of_state_log_and_access(database_url: str) -> None:
    async with Database(database_url) as db:
        await _open_and_compare(db)


@asynccontextmanager
async def in_memory_database() -> AsyncIterator[Database]:
    """A database that is neither a SQLite file nor Postgres: the hot reads go through the
    engine. Its schema comes from the models."""
    async with Database("sqlite+aiosqlite:///:memory:") as db:
        async with db.engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        yield db


async def test_a_room_opens_through_the_engine_on_an_in_memory_database() -> None:
    async with in_memory_database() as db:
        await _open_and_compare(db)


async def test_delete_document_log(database_url: str) -> None:
    async with Database(database_url) as db:
        loop_id, other_id = await make_documents(db, loops=2)
        await append(db, [("loop", loop_id, b"a"), ("loop", other_id, b"b"), ("loop", loop_id, b"c")])
        async with db.write_session() as session:
            await store.delete_document_log(session, resource_type="loop", resource_id=loop_id)
        assert await log_count(db, loop_id) == 0
        assert await log_count(db, other_id) == 1
        # The (now orphaned) document loads as its snapshot alone.
        assert (await load(db, loop_id)).updates == []


async def test_log_ids_are_never_reused_after_the_newest_rows_are_deleted(database_url: str) -> None:
    # A snapshot that folds the whole log deletes the rows with the highest ids; a reused
    # id would be <= that document's position and silently count as already folded in.
    async with Database(database_url) as db:
        (loop_id,) = await make_documents(db)
        ids = await append(db, [("loop", loop_id, b"a"), ("loop", loop_id, b"b")])
        assert await snapshot(db, loop_id, state=b"S", position=ids[-1])
        assert await log_count(db) == 0
        (next_id,) = await append(db, [("loop", loop_id, b"c")])
        assert next_id > ids[-1]
        assert (await load(db, loop_id)).updates == [(next_id, b"c")]


async def test_log_ids_become_visible_in_increasing_order(database_url: str) -> None:
    # Two processes appending at once: the later id must not commit before the earlier
    # one, or a snapshot could pass over (and delete) an entry it never saw.
    async with Database(database_url) as db:
        (loop_id,) = await make_documents(db)
        async with db.write_session() as first:
            (first_id,) = await store.append_updates(first, [("loop", loop_id, b"first")])
            second = asyncio.create_task(append(db, [("loop", loop_id, b"second")]))
            await asyncio.sleep(0.3)
            assert not second.done()  # waits for the first transaction to end
        (second_id,) = await second
        assert second_id > first_id
        assert [data for _, data in (await load(db, loop_id)).updates] == [b"first", b"second"]


async def test_real_yjs_updates_round_trip_through_log_and_snapshot(database_url: str) -> None:
    async with Database(database_url) as db:
        (loop_id,) = await make_documents(db)
        doc: Doc = Doc()
        captured: list[bytes] = []
        doc.observe(lambda event: captured.append(event.update))
        meta = doc.get("meta", type=Map)
        steps = doc.get("steps", type=Map)

        meta["name"] = "Groove"
        meta["bpm"] = 100
        steps['[0,null,"drum-kick",null]'] = Map({"step": 0, "soundId": "drum-kick", "velocity": 1.0})
        await append(db, [("loop", loop_id, u) for u in captured])

        # A snapshot of what is stored so far, built the way a server would: load, apply.
        stored = await load(db, loop_id)
        server_doc: Doc = Doc()
        for _, update in stored.updates:
            server_doc.apply_update(update)
        assert await snapshot(db, loop_id, state=server_doc.get_update(), position=stored.updates[-1][0])

        captured.clear()
        meta["bpm"] = 128
        del steps['[0,null,"drum-kick",null]']
        steps['[4,null,"synth-lead","G4"]'] = Map({"step": 4, "soundId": "synth-lead", "note": "G4"})
        await append(db, [("loop", loop_id, u) for u in captured])

        stored = await load(db, loop_id)
        assert stored.state is not None and len(stored.updates) == len(captured)
        fresh: Doc = Doc()
        fresh.apply_update(stored.state)
        for _, update in stored.updates:
            fresh.apply_update(update)
        assert fresh.get("meta", type=Map).to_py() == {"name": "Groove", "bpm": 128.0}
        assert fresh.get("steps", type=Map).to_py() == {
            '[4,null,"synth-lead","G4"]': {"step": 4.0, "soundId": "synth-lead", "note": "G4"}
        }
        assert fresh.get_state() == doc.get_state()


# --- migration 0002 ----------------------------------------------------------------------


async def _fresh_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | None]:
    """An empty database (no tables) and, on Postgres, its name to drop afterwards."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'fresh.sqlite3'}", None
    base = str(request.getfixturevalue("postgres_url")).replace("postgresql+asyncpg://", "postgresql://", 1)
    name = f"mp_mig_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(base)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    prefix = base.rpartition("/")[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{prefix}/{name}", name


async def _drop_postgres_database(request: pytest.FixtureRequest, name: str) -> None:
    base = str(request.getfixturevalue("postgres_url")).replace("postgresql+asyncpg://", "postgresql://", 1)
    conn = await asyncpg.connect(base)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def _downgrade(db: Database, revision: str) -> None:
    def run(connection: Connection) -> None:
        config = alembic_config(db.url)
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    async with db.engine.begin() as conn:
        await conn.run_sync(run)


async def _columns(db: Database, table: str) -> set[str]:
    def names(connection: Connection) -> set[str]:
        from sqlalchemy import inspect

        return {c["name"] for c in inspect(connection).get_columns(table)}

    async with db.engine.connect() as conn:
        return await conn.run_sync(names)


async def test_migration_0002_upgrades_existing_rows_and_downgrades(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url, pg_name = await _fresh_url(backend, request, tmp_path)
    try:
        async with Database(url) as db:
            await upgrade(db, "0001")
            user, original, fork = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
            now = utcnow()
            insert_loop = text(
                "INSERT INTO loops (id, user_id, name, length, color, chord_progression, icon_sequence,"
                " is_public, view_count, fork_count, forked_from, created_at, updated_at) VALUES"
                " (:id, :user_id, 'L', 4, '#FFD11A', '[]', '[]', false, 0, 0, :forked_from, :now, :now)"
            )

            def key(value: uuid.UUID) -> Any:
                return value.hex if backend == "sqlite" else value

            async with db.write_session() as session:
                await session.execute(
                    text(
                        "INSERT INTO users (id, is_anonymous, created_at, updated_at, last_seen_at)"
                        " VALUES (:id, true, :now, :now, :now)"
                    ),
                    {"id": key(user), "now": now},
                )
                await session.execute(
                    insert_loop, {"id": key(original), "user_id": key(user), "forked_from": None, "now": now}
                )
                await session.execute(
                    insert_loop,
                    {"id": key(fork), "user_id": key(user), "forked_from": key(original), "now": now},
                )

            await upgrade(db)
            assert await current_revision(db) == head_revision()
            stored = await load(db, fork)
            assert stored == store.StoredDocument(state=None, position=0, updates=[])
            (entry,) = await append(db, [("loop", fork, b"u")])
            assert await snapshot(db, fork, state=b"S", position=entry)

            await _downgrade(db, "0001")
            assert await current_revision(db) == "0001"
            assert "doc_state" not in await _columns(db, "loops")
            assert "doc_log_position" not in await _columns(db, "songs")
            async with db.session() as session:
                tables = await session.run_sync(
                    lambda s: __import__("sqlalchemy").inspect(s.connection()).get_table_names()
                )
                assert "document_updates" not in tables
                rows = (await session.execute(text("SELECT id, forked_from FROM loops"))).all()
            # Rows (and the self-referencing forked_from) survive the downgrade.
            assert len(rows) == 2
            assert {str(r.forked_from).replace("-", "") for r in rows if r.forked_from} == {original.hex}

            await upgrade(db)
            assert (await load(db, fork)).position == 0
    finally:
        if pg_name is not None:
            await _drop_postgres_database(request, pg_name)
