"""Room.apply_untrusted and Room.apply_content try a change on the live document itself and
roll a refused one back: the document, its client id, the REST content and every change
accepted before (pending structs of trusted updates included) are as if it never came."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pycrdt import Doc, Map

from music.bounds import MAX_META_KEYS
from music.kinds import DocKind
from music.reading import loop_doc_to_content
from music.writing import loop_content_to_update
from realtime.errors import RealtimeError
from realtime.rooms import MIN_ROLLBACK_TAIL_BYTES, Room


class _NoTransport:
    def send(self, *args: object) -> None:
        pass

    async def disconnect(self, *args: object) -> None:
        pass


def _room() -> Room:
    doc: Doc[Any] = Doc()
    doc.apply_update(loop_content_to_update({"name": "x", "length": 4}))
    return Room(DocKind.LOOP, uuid.uuid4(), doc, _NoTransport())


def _client(room: Room, client_id: int) -> tuple[Doc[Any], list[bytes]]:
    """A client's copy of the room's document and the updates of its transactions."""
    client: Doc[Any] = Doc(client_id=client_id)
    client.apply_update(room.doc.get_update())
    updates: list[bytes] = []
    client.observe(lambda event: updates.append(event.update))
    return client, updates


def _too_many_meta_keys(client: Doc[Any], updates: list[bytes]) -> bytes:
    with client.transaction():
        for i in range(MAX_META_KEYS + 1):
            client.get("meta", type=Map)[f"k{i}"] = i
    return updates[-1]


def test_an_update_with_missing_dependencies_is_rolled_back() -> None:
    room = _room()
    before = room.doc.get_update()
    client, updates = _client(room, 12)
    client.get("meta", type=Map)["a"] = 1
    client.get("meta", type=Map)["b"] = 2
    with pytest.raises(RealtimeError) as refused:
        room.apply_untrusted(updates[1])
    assert refused.value.code == "missing_dependencies"
    assert room.doc.get_update() == before and room.version == 0
    assert room.apply_untrusted(updates[0]) is not None
    assert room.apply_untrusted(updates[1]) is not None
    assert room.doc.get("meta", type=Map)["b"] == 2


def test_a_refusal_keeps_client_id_content_cache_and_accepted_changes() -> None:
    room = _room()
    client_id = room.doc.client_id
    client, updates = _client(room, 13)
    client.get("chords", type=Map)["0"] = {"chord": "C"}
    assert room.apply_untrusted(updates[-1]) is not None
    content = room.content()  # the reader now caches the chord
    version = room.version
    with pytest.raises(RealtimeError) as refused:
        room.apply_untrusted(_too_many_meta_keys(client, updates))
    assert refused.value.code == "content_too_large"
    assert room.doc.client_id == client_id  # the awareness of the room and the server's own edits
    assert room.version == version
    assert "k0" not in room.doc.get("meta", type=Map)
    assert room.content() == content == loop_doc_to_content(room.doc)
    # The room goes on: a REST write and a client edit after the rollback both land.
    assert room.apply_content({"name": "renamed"}, {"name"}) is not None
    other, other_updates = _client(room, 14)
    other.get("chords", type=Map)["1"] = {"chord": "G"}
    assert room.apply_untrusted(other_updates[-1]) is not None
    read = room.content()
    assert read == loop_doc_to_content(room.doc)
    assert read["name"] == "renamed" and read["chordProgression"] != content["chordProgression"]
    assert content["chordProgression"] != loop_doc_to_content(_room().doc)["chordProgression"]


def test_pending_structs_of_a_trusted_update_survive_a_rollback() -> None:
    room = _room()
    source, updates = _client(room, 15)
    source.get("meta", type=Map)["a"] = 1
    source.get("meta", type=Map)["b"] = 2
    client, client_updates = _client(room, 16)
    client.get("meta", type=Map)["c"] = 3
    assert room.apply_untrusted(client_updates[-1]) is not None  # the rollback copy exists now
    room.apply(updates[1])  # from the log or another instance: its dependency is on the way
    with pytest.raises(RealtimeError):
        room.apply_untrusted(_too_many_meta_keys(client, client_updates))
    room.apply(updates[0])
    meta = room.doc.get("meta", type=Map)
    assert (meta["a"], meta["b"], meta["c"]) == (1, 2, 3)


def test_a_refused_rest_write_is_rolled_back() -> None:
    room = _room()
    room.apply_content({"name": "first"}, {"name"})
    before = room.doc.get_update()
    with pytest.raises(RealtimeError) as refused:
        room.apply_content({"name": "y" * 100}, {"name"}, max_growth=50)
    assert refused.value.code == "document_too_large"
    assert room.doc.get_update() == before
    assert room.content()["name"] == "first"


def test_rollback_after_the_copy_was_re_encoded() -> None:
    room = _room()
    client, updates = _client(room, 17)
    written = 0
    i = 0
    while written < 3 * MIN_ROLLBACK_TAIL_BYTES:  # several re-encodings of the rollback copy
        client.get("meta", type=Map)["note"] = f"{i}-" + "z" * 500
        delta = room.apply_untrusted(updates[-1])
        assert delta is not None
        written += len(delta)
        i += 1
    before = room.doc.get_update()
    with pytest.raises(RealtimeError):
        room.apply_untrusted(_too_many_meta_keys(client, updates))
    rebuilt: Doc[Any] = Doc()
    rebuilt.apply_update(room.doc.get_update())
    expected: Doc[Any] = Doc()
    expected.apply_update(before)
    assert rebuilt.get_state() == expected.get_state()
    assert room.doc.get("meta", type=Map)["note"] == f"{i - 1}-" + "z" * 500
