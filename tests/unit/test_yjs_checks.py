"""The cheap checks of issue 6 as pure logic: payload validators, room admission, live bounds,
the incremental content reader, strict awareness states, and the pycrdt behaviour they rely on
(the rollback of refused updates: test_room_rollback.py)."""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest
from pycrdt import Doc, Encoder, Map, get_update

from music.bounds import MAX_ENTRY_FIELDS, MAX_STEPS
from music.ids import parse_canonical_uuid
from music.kinds import DocKind
from music.lib0 import MalformedPayload, read_var_uint
from music.reading import ContentReader, check_live_bounds, loop_doc_to_content
from music.schema import DEFAULT_NAME, storable_text
from music.writing import loop_content_to_update
from music.yjs_checks import check_state_vector, check_update_header, decode_state_vector
from presence.awareness import MalformedAwareness, RoomAwareness, parse_state
from realtime.admission import admission_refusal
from realtime.ysocketio.namespaces import parse_namespace


def var_uint(value: int) -> bytes:
    encoder = Encoder()
    encoder.write_var_uint(value)
    return encoder.to_bytes()


def test_namespaces_have_one_spelling() -> None:
    doc_id = uuid.uuid4()
    assert parse_namespace(f"/yjs|loop:{doc_id}") == (DocKind.LOOP, doc_id)
    for alias in (str(doc_id).upper(), "----" + doc_id.hex, "{" + str(doc_id) + "}", doc_id.hex):
        assert parse_namespace(f"/yjs|loop:{alias}") is None
        assert parse_canonical_uuid(alias) is None
    assert parse_namespace(f"/yjs|loop:{doc_id}/x") is None


@pytest.mark.parametrize(
    "state_vector",
    [b"\x80\x80\x80\x80\x02", b"\x02\x01\x01", b"\x01\x01\x01\x00", b"\xff" * 20, b""],
    ids=["claims-2^29", "short", "trailing", "overlong-varint", "empty"],
)
def test_bad_state_vectors_are_refused(state_vector: bytes) -> None:
    with pytest.raises(MalformedPayload):
        check_state_vector(state_vector, max_bytes=1024)


def test_real_state_vectors_pass_and_decode() -> None:
    doc: Doc[Any] = Doc(client_id=7)
    doc.get("m", type=Map)["a"] = 1
    check_state_vector(doc.get_state(), max_bytes=1024)
    assert decode_state_vector(doc.get_state()) == {7: 1}
    check_state_vector(b"\x00", max_bytes=1024)
    with pytest.raises(MalformedPayload, match="at most"):
        check_state_vector(b"\x00" * 2000, max_bytes=1024)


def test_update_headers_are_bounded_by_their_length() -> None:
    doc: Doc[Any] = Doc()
    doc.get("m", type=Map)["a"] = "x"
    check_update_header(doc.get_update())
    check_update_header(b"\x00\x00")
    with pytest.raises(MalformedPayload):
        check_update_header(var_uint(2**27))


def test_varints_stop_at_what_javascript_reads() -> None:
    assert read_var_uint(var_uint(2**53 - 1), 0) == (2**53 - 1, 8)
    with pytest.raises(MalformedPayload):
        read_var_uint(var_uint(2**53), 0)
    with pytest.raises(MalformedPayload):
        read_var_uint(b"\xff" * 100_000, 0)  # refused at once, not after building a huge integer


def test_admission() -> None:
    writers = [("user:a", True)] * 3
    assert admission_refusal(writers, identity="user:a", can_write=True, max_clients=8, max_per_user=3)
    assert (
        admission_refusal(writers, identity="user:b", can_write=False, max_clients=8, max_per_user=3) is None
    )
    six = [(f"user:{i}", False) for i in range(6)]
    assert "viewers" in (
        admission_refusal(six, identity="x", can_write=False, max_clients=8, max_per_user=3) or ""
    )
    assert admission_refusal(six, identity="x", can_write=True, max_clients=8, max_per_user=3) is None
    full = [(f"user:{i}", True) for i in range(8)]
    assert "8 connections" in (
        admission_refusal(full, identity="x", can_write=True, max_clients=8, max_per_user=3) or ""
    )


@pytest.mark.parametrize(
    "text",
    [
        '{"x": NaN}',
        '{"x": Infinity}',
        '{"x": -Infinity}',
        '{"x": 1e999}',
        "[1]",
        '"s"',
        '{"a": ' + "[" * 20 + "]" * 20 + "}",
    ],
)
def test_awareness_states_must_be_strict_json(text: str) -> None:
    with pytest.raises(MalformedAwareness):
        parse_state(text)


def test_strict_awareness_states_pass() -> None:
    assert parse_state('{"user": {"name": "A", "color": "#fff"}, "cursor": {"bar": 1.5}}')["cursor"] == {
        "bar": 1.5
    }


def test_awareness_ids_are_reserved_for_their_user_after_they_leave() -> None:
    awareness = RoomAwareness(Doc())

    def entry(client_id: int, clock: int, state: str) -> bytes:
        encoder = Encoder()
        encoder.write_var_uint(1)
        encoder.write_var_uint(client_id)
        encoder.write_var_uint(clock)
        encoder.write_var_string(state)
        return encoder.to_bytes()

    assert awareness.apply("s1", entry(5, 1, '{"n": 1}'), "user:a") is not None
    assert awareness.apply("s2", entry(5, 2, '{"n": "echo"}'), "user:b") is None  # held by s1
    awareness.remove_session("s1")
    assert awareness.apply("s3", entry(5, 9, '{"n": "impostor"}'), "user:b") is None  # reserved
    assert awareness.apply("s4", entry(5, 1, '{"n": "back"}'), "user:a") is not None  # a fresh clock
    assert awareness.states[5] == {"n": "back"}
    with pytest.raises(MalformedAwareness):
        awareness.apply("s4", entry(2**32, 1, "{}"), "user:a")


def test_check_live_bounds() -> None:
    doc: Doc[Any] = Doc()
    steps = doc.get("steps", type=Map)
    with doc.transaction():
        for i in range(MAX_STEPS):
            steps[str(i)] = Map({"step": 0, "soundId": "x"})
    check_live_bounds("loop", doc)
    steps["one-more"] = Map({"step": 0})
    with pytest.raises(ValueError, match="at most 2048"):
        check_live_bounds("loop", doc)
    fat: Doc[Any] = Doc()
    fat.get("timeline", type=Map)["b"] = Map({f"a{i}": i for i in range(MAX_ENTRY_FIELDS + 1)})
    check_live_bounds("song", fat)  # only touched entries are measured
    with pytest.raises(ValueError, match="attributes"):
        check_live_bounds("song", fat, {"timeline": ["b"]})


def test_text_that_no_database_stores_is_refused_and_skipped() -> None:
    for bad in ("a\x00b", "\ud800"):
        with pytest.raises(ValueError):
            storable_text(bad)
        with pytest.raises(ValueError):
            loop_content_to_update({"name": bad, "length": 4})
    doc: Doc[Any] = Doc()
    doc.get("meta", type=Map)["name"] = "bad\x00"
    doc.get("steps", type=Map)["k"] = Map({"step": 1, "soundId": "kick\x00"})
    content = loop_doc_to_content(doc)
    assert content["name"] == DEFAULT_NAME and content["iconSequence"] == []


def test_the_content_reader_matches_a_full_read_after_random_edits() -> None:
    rng = random.Random(6)
    doc: Doc[Any] = Doc()
    content = {
        "name": "x",
        "length": 4,
        "chordProgression": [{"bar": i, "chord": "C"} for i in range(8)],
        "iconSequence": [{"step": i % 64, "soundId": f"s{i // 64}"} for i in range(300)],
    }
    doc.apply_update(loop_content_to_update(content))
    reader = ContentReader("loop", doc)
    assert reader.content() == loop_doc_to_content(doc)
    steps, chords, meta = (doc.get(n, type=Map) for n in ("steps", "chords", "meta"))
    for i in range(60):
        with doc.transaction():
            keys = list(steps.keys())
            action = rng.randrange(5)
            if action == 0:
                del steps[rng.choice(keys)]
            elif action == 1:
                steps[rng.choice(keys)]["velocity"] = rng.random()
            elif action == 2:
                steps[f"new-{i}"] = Map({"step": rng.randrange(64), "soundId": "n", "row": rng.randrange(4)})
            elif action == 3:
                chords[str(rng.randrange(16))] = {"chord": f"G{i}"}
            else:
                meta["name"] = f"name {i}"
        assert reader.content() == loop_doc_to_content(doc)
    reader.close()


def test_pycrdt_reports_pending_structs_as_uncovered_by_the_state() -> None:
    """Room.apply_untrusted relies on this public pycrdt behaviour: after an update whose
    dependencies are missing is applied, ``get_update(update, doc.get_state())`` still holds
    its struct sections (the update's first varint counts them); after a complete one, none."""
    source: Doc[Any] = Doc(client_id=11)
    updates: list[bytes] = []
    source.observe(lambda event: updates.append(event.update))
    source.get("m", type=Map)["a"] = 1
    source.get("m", type=Map)["b"] = 2
    doc: Doc[Any] = Doc()
    doc.apply_update(updates[1])
    assert read_var_uint(get_update(updates[1], doc.get_state()), 0)[0] > 0
    doc.apply_update(updates[0])
    assert read_var_uint(get_update(updates[1], doc.get_state()), 0)[0] == 0
