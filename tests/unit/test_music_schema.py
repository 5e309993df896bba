"""The CRDT document schema: round trips, convergence under concurrency, tolerance of junk."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Array, Doc, Map, Text

from music.bounds import MAX_STEPS
from music.kinds import LOOP, SONG
from music.reading import doc_to_content, loop_doc_to_content, song_doc_to_content
from music.schema import CHORDS, META, STEPS, TIMELINE, new_doc, step_key
from music.writing import (
    apply_content,
    apply_loop_content,
    apply_song_content,
    content_to_update,
    loop_content_to_update,
    song_content_to_update,
)

# A copy of shared/fixtures/composer-localstorage.json: what the composer keeps in localStorage.
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "composer-localstorage.json"


# --------------------------------------------------------------------------- helpers


def doc_from(update: bytes) -> Doc:
    doc = new_doc()
    doc.apply_update(update)
    return doc


def sync(*docs: Doc) -> None:
    """Exchange every doc's missing updates with every other (a full mesh sync)."""
    for a in docs:
        for b in docs:
            if a is not b:
                b.apply_update(a.get_update(b.get_state()))


def record_updates(doc: Doc) -> list[bytes]:
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    return updates


def canonical_loop(content: dict[str, Any]) -> dict[str, Any]:
    """What loop_doc_to_content must return for a valid input: defaults, canonical order."""
    out = {
        "name": content["name"],
        "length": content["length"],
        "bpm": content.get("bpm"),
        "color": content.get("color") or "#FFD11A",
        "schemaVersion": content.get("schemaVersion"),
        "chordProgression": sorted(
            (dict(c) for c in content.get("chordProgression", [])), key=lambda c: c["bar"]
        ),
    }
    steps = []
    for raw in content.get("iconSequence", []):
        step = {k: v for k, v in raw.items() if v is not None}
        step.setdefault("velocity", 0.8)
        step["velocity"] = float(step["velocity"])
        steps.append(step)
    steps.sort(
        key=lambda s: (
            s["step"],
            s.get("row", -1),
            s["soundId"],
            s.get("pitch", -1),
            s.get("note", ""),
        )
    )
    out["iconSequence"] = steps
    return out


def canonical_song(content: dict[str, Any]) -> dict[str, Any]:
    timeline = sorted((dict(b) for b in content.get("timeline", [])), key=lambda b: (b["startBar"], b["id"]))
    return {
        "name": content["name"],
        "bpm": content["bpm"],
        "timeSignature": content["timeSignature"],
        "schemaVersion": content.get("schemaVersion"),
        "timeline": timeline,
        "totalBars": max((b["startBar"] + b["duration"] for b in timeline), default=0),
    }


def fixture_loops() -> list[dict[str, Any]]:
    """The composer's localStorage loops, normalized as the REST edge does."""
    data = json.loads(FIXTURE.read_text())
    loops = []
    for raw in data["music-playground:loops"].values():
        loop = {k: v for k, v in raw.items() if k not in {"id", "updatedAt", "bars"}}
        loop["length"] = raw["bars"]
        loop["iconSequence"] = [
            {("step" if k == "bar" else k): v for k, v in s.items()} for s in raw["iconSequence"]
        ]
        loops.append(loop)
    return loops


def fixture_songs() -> list[tuple[dict[str, Any], int]]:
    data = json.loads(FIXTURE.read_text())
    songs = []
    for raw in data["music-playground:songs"].values():
        song = {k: v for k, v in raw.items() if k not in {"id", "updatedAt", "totalBars"}}
        song["timeline"] = [
            {("duration" if k == "bars" else k): v for k, v in b.items()} for b in raw["timeline"]
        ]
        songs.append((song, raw["totalBars"]))
    return songs


SEED_LOOP: dict[str, Any] = {
    "name": "Seed loop",
    "length": 4,
    "chordProgression": [
        {"bar": 12, "chord": "F maj", "roman": "IV", "root": "F", "quality": "maj"},
        {"bar": 0, "chord": "C maj7", "roman": "I", "root": "C", "quality": "maj7"},
        {"bar": 4, "chord": "G maj", "roman": "V", "root": "G", "quality": "maj"},
        {"bar": 8, "chord": "A min", "roman": "vi", "root": "A", "quality": "min"},
    ],
    "iconSequence": [
        {"step": 0, "soundId": "synth-lead", "velocity": 0.8, "note": "C4"},
        {"step": 4, "soundId": "synth-lead", "velocity": 0.8, "note": "G4"},
        {"step": 8, "soundId": "synth-lead", "velocity": 0.8, "note": "A4"},
        {"step": 0, "soundId": "drum-kick", "velocity": 1.0},
        {"step": 4, "soundId": "drum-kick", "velocity": 1.0},
        # two notes of the same sound at the same step: both are kept
        {"step": 0, "soundId": "synth-lead", "note": "E4"},
        {"step": 0, "soundId": "synth-lead", "row": 2, "pitch": 60, "duration16": 2},
        {"step": 0, "soundId": "synth-lead", "row": 2, "pitch": 64, "duration16": 2},
    ],
}

SEED_SONG: dict[str, Any] = {
    "name": "Seed song",
    "bpm": 96,
    "timeSignature": "3/4",
    "timeline": [
        {"id": "block-3", "loopId": "loop-abc", "startBar": 12, "duration": 4},
        {"id": "block-1", "loopId": "loop-abc", "startBar": 0, "duration": 4},
        {"id": "block-2", "loopId": "loop-def", "startBar": 4, "duration": 8, "color": "#7B61FF"},
    ],
}


def add_step(doc: Doc, **step: Any) -> str:
    """What a client does to toggle a cell ON: a nested map under the cell's key."""
    step.setdefault("velocity", 0.8)
    key = step_key(step)
    doc.get(STEPS, type=Map)[key] = Map(step)
    return key


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("loop", fixture_loops(), ids=lambda c: c["name"])
def test_fixture_loops_round_trip(loop: dict[str, Any]) -> None:
    doc = doc_from(loop_content_to_update(loop))
    assert loop_doc_to_content(doc) == canonical_loop(loop)


@pytest.mark.parametrize("song_and_total", fixture_songs(), ids=lambda s: s[0]["name"])
def test_fixture_songs_round_trip(song_and_total: tuple[dict[str, Any], int]) -> None:
    song, total_bars = song_and_total
    content = song_doc_to_content(doc_from(song_content_to_update(song)))
    assert content == canonical_song(song)
    assert content["totalBars"] == total_bars
    assert "color" not in content["timeline"][-1]  # an absent optional stays absent


def test_seed_loop_round_trip_keeps_chords_of_one_sound() -> None:
    content = loop_doc_to_content(doc_from(loop_content_to_update(SEED_LOOP)))
    assert content == canonical_loop(SEED_LOOP)
    at_zero = [s for s in content["iconSequence"] if s["step"] == 0]
    assert len(at_zero) == 5
    assert content["bpm"] is None and content["schemaVersion"] is None
    assert content["color"] == "#FFD11A"
    # output is valid input: it round-trips again, unchanged
    again = loop_doc_to_content(doc_from(loop_content_to_update(content)))
    assert again == content


def test_seed_song_round_trip_and_total_bars() -> None:
    content = song_doc_to_content(doc_from(song_content_to_update(SEED_SONG)))
    assert content == canonical_song(SEED_SONG)
    assert [b["id"] for b in content["timeline"]] == ["block-1", "block-2", "block-3"]
    assert content["totalBars"] == 16


def test_empty_song_has_zero_total_bars() -> None:
    song = {"name": "empty", "bpm": 120, "timeSignature": "4/4"}
    assert song_doc_to_content(doc_from(song_content_to_update(song)))["totalBars"] == 0


def test_doc_layout_is_the_documented_one() -> None:
    doc = doc_from(loop_content_to_update(SEED_LOOP))
    meta = doc.get(META, type=Map)
    assert meta["name"] == "Seed loop" and meta["length"] == 4 and meta["color"] == "#FFD11A"
    assert "bpm" not in meta  # null is an absent key
    chords = doc.get(CHORDS, type=Map)
    assert chords["4"] == {"chord": "G maj", "roman": "V", "root": "G", "quality": "maj"}
    steps = doc.get(STEPS, type=Map)
    kick = steps['[0,null,"drum-kick",null]']
    assert isinstance(kick, Map)
    assert kick.to_py() == {"step": 0, "soundId": "drum-kick", "velocity": 1.0}
    assert '[0,2,"synth-lead",60]' in steps
    assert '[8,null,"synth-lead","A4"]' in steps
    song = doc_from(song_content_to_update(SEED_SONG))
    block = song.get(TIMELINE, type=Map)["block-2"]
    assert isinstance(block, Map)
    assert block.to_py() == {"loopId": "loop-def", "startBar": 4, "duration": 8, "color": "#7B61FF"}


def test_step_key_matches_javascript_json_stringify() -> None:
    assert step_key({"step": 3.0, "soundId": "kick", "row": 1.0, "pitch": 36.0}) == ('[3,1,"kick",36]')
    assert step_key({"step": 0, "soundId": "lead", "note": "C#4"}) == '[0,null,"lead","C#4"]'
    # pitch takes precedence over note as the tone identity
    assert step_key({"step": 0, "soundId": "s", "pitch": 60, "note": "C4"}) == '[0,null,"s",60]'
    assert step_key({"step": 1, "soundId": 'sô|n"d'}) == '[1,null,"sô|n\\"d",null]'


def test_duplicate_cells_in_input_collapse_later_wins() -> None:
    loop = {
        "name": "dups",
        "length": 1,
        "iconSequence": [
            {"step": 2, "soundId": "kick", "velocity": 0.2},
            {"step": 2, "soundId": "kick", "velocity": 0.9},
        ],
    }
    content = loop_doc_to_content(doc_from(loop_content_to_update(loop)))
    assert content["iconSequence"] == [{"step": 2, "soundId": "kick", "velocity": 0.9}]


def test_by_kind_dispatch() -> None:
    doc = doc_from(content_to_update(LOOP, SEED_LOOP))
    assert doc_to_content("loop", doc) == canonical_loop(SEED_LOOP)
    song = doc_from(content_to_update(SONG, SEED_SONG))
    apply_content(SONG, song, {"bpm": 100}, fields={"bpm"})
    assert doc_to_content(SONG, song)["bpm"] == 100
    with pytest.raises(ValueError):
        doc_to_content("playlist", song)


# --------------------------------------------------------------------------- concurrency


def two_replicas(content: dict[str, Any]) -> tuple[Doc, Doc]:
    update = loop_content_to_update(content)
    return doc_from(update), doc_from(update)


def test_concurrent_edits_to_different_cells_both_survive() -> None:
    a, b = two_replicas(SEED_LOOP)
    add_step(a, step=6, soundId="drum-snare", row=1, pitch=38)
    add_step(b, step=10, soundId="drum-hihat", row=1, pitch=42)
    b.get(CHORDS, type=Map)["4"] = {"chord": "Em", "roman": "iii"}
    a.get(META, type=Map)["bpm"] = 100
    b.get(META, type=Map)["name"] = "renamed"
    sync(a, b)
    content = loop_doc_to_content(a)
    assert content == loop_doc_to_content(b)
    cells = {(s["step"], s["soundId"]) for s in content["iconSequence"]}
    assert {(6, "drum-snare"), (10, "drum-hihat")} <= cells
    assert len(content["iconSequence"]) == len(SEED_LOOP["iconSequence"]) + 2
    assert {"bar": 4, "chord": "Em", "roman": "iii"} in content["chordProgression"]
    assert content["bpm"] == 100 and content["name"] == "renamed"


def test_concurrent_toggle_on_of_the_same_cell_gives_one_step() -> None:
    a, b = two_replicas(SEED_LOOP)
    key_a = add_step(a, step=5, soundId="drum-snare", row=1, pitch=38, velocity=0.5)
    key_b = add_step(b, step=5, soundId="drum-snare", row=1, pitch=38, velocity=0.9)
    assert key_a == key_b
    sync(a, b)
    content = loop_doc_to_content(a)
    assert content == loop_doc_to_content(b)
    at_five = [s for s in content["iconSequence"] if s["step"] == 5]
    assert len(at_five) == 1
    assert at_five[0]["velocity"] in (0.5, 0.9)


def test_concurrent_toggle_off_of_the_same_cell_is_idempotent() -> None:
    a, b = two_replicas(SEED_LOOP)
    key = '[0,null,"drum-kick",null]'
    del a.get(STEPS, type=Map)[key]
    del b.get(STEPS, type=Map)[key]
    sync(a, b)
    for doc in (a, b):
        cells = [(s["step"], s["soundId"]) for s in loop_doc_to_content(doc)["iconSequence"]]
        assert (0, "drum-kick") not in cells
        assert len(cells) == len(SEED_LOOP["iconSequence"]) - 1


def test_concurrent_edits_of_different_attributes_of_one_step_merge() -> None:
    a, b = two_replicas(SEED_LOOP)
    key = '[0,2,"synth-lead",60]'
    a.get(STEPS, type=Map)[key]["velocity"] = 0.3
    b.get(STEPS, type=Map)[key]["duration16"] = 8
    sync(a, b)
    step = next(s for s in loop_doc_to_content(a)["iconSequence"] if s["step"] == 0 and s.get("pitch") == 60)
    assert step["velocity"] == 0.3 and step["duration16"] == 8
    assert loop_doc_to_content(a) == loop_doc_to_content(b)


def test_concurrent_timeline_move_and_recolour_merge() -> None:
    update = song_content_to_update(SEED_SONG)
    a, b = doc_from(update), doc_from(update)
    a.get(TIMELINE, type=Map)["block-1"]["startBar"] = 20
    b.get(TIMELINE, type=Map)["block-1"]["color"] = "#00FF00"
    b.get(TIMELINE, type=Map)["block-9"] = Map({"loopId": "l", "startBar": 30, "duration": 2})
    sync(a, b)
    content = song_doc_to_content(a)
    assert content == song_doc_to_content(b)
    blocks = {blk["id"]: blk for blk in content["timeline"]}
    assert blocks["block-1"]["startBar"] == 20 and blocks["block-1"]["color"] == "#00FF00"
    assert content["totalBars"] == 32


# --------------------------------------------------------------------------- apply (REST PATCH)


def test_apply_partial_fields_touches_only_those_fields() -> None:
    a, b = two_replicas(SEED_LOOP)
    # a collaborator edits steps, chords and the tempo while the PATCH happens elsewhere
    b.get(STEPS, type=Map)['[0,null,"drum-kick",null]']["velocity"] = 0.25
    b.get(CHORDS, type=Map)["16"] = {"chord": "Dm"}
    b.get(META, type=Map)["bpm"] = 90
    patch = {"name": "patched", "iconSequence": [], "chordProgression": [], "bpm": 200}
    updates = record_updates(a)
    apply_loop_content(a, patch, fields={"name"})
    assert len(updates) == 1  # one transaction, one update
    assert loop_doc_to_content(a)["iconSequence"] == canonical_loop(SEED_LOOP)["iconSequence"]
    sync(a, b)
    content = loop_doc_to_content(a)
    assert content == loop_doc_to_content(b)
    assert content["name"] == "patched"
    assert content["bpm"] == 90
    assert {"bar": 16, "chord": "Dm"} in content["chordProgression"]
    kick = next(s for s in content["iconSequence"] if s["soundId"] == "drum-kick" and s["step"] == 0)
    assert kick["velocity"] == 0.25


def test_apply_collection_is_minimal_so_concurrent_cell_edits_survive() -> None:
    a, b = two_replicas(SEED_LOOP)
    # collaborator: a new step, and an edit of a step the PATCH does not change
    add_step(b, step=7, soundId="drum-clap")
    b.get(STEPS, type=Map)['[4,null,"drum-kick",null]']["velocity"] = 0.4
    # PATCH (from a stale read): drop one step, change the velocity of another
    new_steps = copy.deepcopy(SEED_LOOP["iconSequence"])
    new_steps = [s for s in new_steps if not (s["step"] == 8 and s["soundId"] == "synth-lead")]
    for s in new_steps:
        if s.get("note") == "G4":
            s["velocity"] = 0.1
    apply_loop_content(a, {"iconSequence": new_steps}, fields={"iconSequence"})
    sync(a, b)
    content = loop_doc_to_content(a)
    assert content == loop_doc_to_content(b)
    by_cell = {(s["step"], s["soundId"], s.get("note")): s for s in content["iconSequence"]}
    assert (8, "synth-lead", "A4") not in by_cell  # removed by the PATCH
    assert by_cell[(4, "synth-lead", "G4")]["velocity"] == 0.1  # changed by the PATCH
    assert by_cell[(4, "drum-kick", None)]["velocity"] == 0.4  # concurrent edit survives
    assert (7, "drum-clap", None) in by_cell  # concurrent insert survives


def test_apply_equal_content_writes_nothing() -> None:
    doc = doc_from(loop_content_to_update(SEED_LOOP))
    updates = record_updates(doc)
    apply_loop_content(doc, SEED_LOOP)
    apply_loop_content(doc, loop_doc_to_content(doc))
    assert updates == []
    song = doc_from(song_content_to_update(SEED_SONG))
    song_updates = record_updates(song)
    apply_song_content(song, {**song_doc_to_content(song)})  # totalBars is ignored
    assert song_updates == []


def test_apply_full_content_replaces_and_clears() -> None:
    doc = doc_from(loop_content_to_update({**SEED_LOOP, "bpm": 128, "schemaVersion": 1}))
    target = {
        "name": "other",
        "length": 8,
        "color": "#123abc",
        "chordProgression": [{"bar": 2, "chord": "D"}],
        "iconSequence": [{"step": 1, "soundId": "kick", "duration16": 3}],
    }
    apply_loop_content(doc, target)
    assert loop_doc_to_content(doc) == canonical_loop(target)
    assert "bpm" not in doc.get(META, type=Map)
    # removing an optional attribute of a kept step deletes it in the nested map
    apply_loop_content(doc, {"iconSequence": [{"step": 1, "soundId": "kick"}]}, fields={"iconSequence"})
    step = doc.get(STEPS, type=Map)['[1,null,"kick",null]']
    assert step.to_py() == {"step": 1, "soundId": "kick", "velocity": 0.8}


def test_apply_tags_the_transaction_origin() -> None:
    doc = doc_from(song_content_to_update(SEED_SONG))
    seen: list[Any] = []
    # origins are visible to whoever opens the transaction; nested use must agree
    with doc.transaction(origin="rest") as txn:
        apply_song_content(doc, {"name": "x"}, fields={"name"}, origin="rest")
        seen.append(txn.origin)
    assert seen == ["rest"]
    with pytest.raises(RuntimeError), doc.transaction(origin="client"):
        apply_song_content(doc, {"name": "y"}, fields={"name"}, origin="rest")


@pytest.mark.parametrize(
    ("content", "fields", "message"),
    [
        ({**SEED_LOOP, "tempo": 3}, None, "unknown content field"),
        ({"name": "x"}, {"nope"}, "unknown content field"),
        ({**SEED_LOOP, "length": 3}, None, "length"),
        ({**SEED_LOOP, "name": ""}, None, "name"),
        ({**SEED_LOOP, "name": None}, None, "name: required"),
        ({"name": "x"}, None, "length: required"),
        ({**SEED_LOOP, "color": "red"}, None, "color"),
        ({**SEED_LOOP, "bpm": True}, None, "bpm"),
        ({**SEED_LOOP, "bpm": 12.5}, None, "bpm"),
        ({**SEED_LOOP, "chordProgression": "C G Am F"}, None, "expected a list"),
        (
            {**SEED_LOOP, "chordProgression": [{"bar": 0, "chord": "C"}, {"bar": 0, "chord": "D"}]},
            None,
            "second chord cell",
        ),
        ({**SEED_LOOP, "iconSequence": [{"step": 64, "soundId": "k"}]}, None, "iconSequence[0]"),
        ({**SEED_LOOP, "iconSequence": [{"bar": 1, "soundId": "k"}]}, None, "unknown field 'bar'"),
        ({**SEED_LOOP, "iconSequence": [{"step": 1}]}, None, "soundId"),
        ({**SEED_LOOP, "iconSequence": [{"step": 1, "soundId": "k", "velocity": 2}]}, None, "velocity"),
        ({**SEED_LOOP, "iconSequence": [{"step": 1, "soundId": "k", "note": "H9"}]}, None, "note"),
        ({**SEED_LOOP, "iconSequence": [{"step": 1, "soundId": "k"}] * (MAX_STEPS + 1)}, None, "at most"),
    ],
)
def test_invalid_loop_content_is_refused_before_writing(
    content: dict[str, Any], fields: set[str] | None, message: str
) -> None:
    doc = doc_from(loop_content_to_update(SEED_LOOP))
    updates = record_updates(doc)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        apply_loop_content(doc, content, fields=fields)
    assert updates == []


def test_invalid_song_content_is_refused() -> None:
    dup = [{"id": "b", "loopId": "l", "startBar": 0, "duration": 1}] * 2
    with pytest.raises(ValueError, match="second block"):
        song_content_to_update({**SEED_SONG, "timeline": dup})
    with pytest.raises(ValueError, match="timeSignature"):
        song_content_to_update({**SEED_SONG, "timeSignature": "5/4"})
    with pytest.raises(ValueError, match="duration"):
        song_content_to_update(
            {**SEED_SONG, "timeline": [{"id": "b", "loopId": "l", "startBar": 0, "duration": 0}]}
        )


# --------------------------------------------------------------------------- hostile documents


def junk_loop_doc() -> Doc:
    doc = doc_from(loop_content_to_update(SEED_LOOP))
    with doc.transaction():
        meta = doc.get(META, type=Map)
        meta["name"] = 5
        meta["length"] = "eight"
        meta["bpm"] = True
        meta["color"] = Map({"r": 1})
        meta["schemaVersion"] = 1.5
        meta["extra"] = "ignored"
        chords = doc.get(CHORDS, type=Map)
        chords["abc"] = {"chord": "X"}
        chords["04"] = {"chord": "duplicate of bar 4 under a non-canonical key"}
        chords["99999999999"] = {"chord": "too far"}
        chords["20"] = 3
        chords["21"] = {"chord": 7}
        chords["22"] = Text("C")
        chords["13"] = {"chord": "Dm", "roman": 12, "evil": [1, 2]}  # kept, bad bits dropped
        chords["14"] = Map({"chord": "Em"})  # a nested map instead of a JSON object: readable
        steps = doc.get(STEPS, type=Map)
        steps["s1"] = "not a step"
        steps["s2"] = Map({"step": 3})  # no soundId
        steps["s3"] = Map({"step": 99, "soundId": "x"})
        steps["s4"] = Map({"step": 3, "soundId": "x", "velocity": "loud", "pitch": 500})
        steps["s5"] = Array([1, 2, 3])
        steps["s6"] = Map({"step": True, "soundId": "x"})
        steps["s7"] = {"step": 9, "soundId": ["x"]}
        steps["s8"] = Map({"step": 9, "soundId": "y", "row": Map({"a": 1})})
        # the same cell as an existing step, under a foreign key: collapses into one
        steps["zz-foreign"] = Map({"step": 0, "soundId": "drum-kick", "velocity": 0.1})
    doc.get("unrelated-root", type=Array).append("whatever")
    return doc


def test_loop_doc_with_junk_reads_without_raising_and_repairs() -> None:
    content = loop_doc_to_content(junk_loop_doc())
    assert content["name"] == "Untitled"
    assert content["length"] == 4
    assert content["bpm"] is None and content["schemaVersion"] is None
    assert content["color"] == "#FFD11A"
    bars = [c["bar"] for c in content["chordProgression"]]
    assert bars == [0, 4, 8, 12, 13, 14]
    assert content["chordProgression"][-2] == {"bar": 13, "chord": "Dm"}
    steps = content["iconSequence"]
    kicks = [s for s in steps if s["step"] == 0 and s["soundId"] == "drum-kick"]
    assert kicks == [{"step": 0, "soundId": "drum-kick", "velocity": 1.0}]  # canonical key wins
    assert {"step": 3, "soundId": "x", "velocity": 0.8} in steps  # s4, bad attributes dropped
    assert {"step": 9, "soundId": "y", "velocity": 0.8} in steps  # s8
    assert len(steps) == len(SEED_LOOP["iconSequence"]) + 2
    # what comes out is valid input, and writing it back repairs the document
    fresh = doc_from(loop_content_to_update(content))
    assert loop_doc_to_content(fresh) == content
    doc = junk_loop_doc()
    apply_loop_content(doc, content)
    assert loop_doc_to_content(doc) == content
    assert set(doc.get(STEPS, type=Map).keys()) == {step_key(s) for s in steps}


def test_roots_of_the_wrong_type_read_as_empty() -> None:
    hostile: Doc = Doc()
    hostile.get(META, type=Text).insert(0, "hello")
    hostile.get(STEPS, type=Array).append(Map({"step": 1, "soundId": "k"}))
    hostile.get(TIMELINE, type=Array).append("block")
    doc = doc_from(hostile.get_update())
    assert loop_doc_to_content(doc) == {
        "name": "Untitled",
        "length": 4,
        "bpm": None,
        "color": "#FFD11A",
        "schemaVersion": None,
        "chordProgression": [],
        "iconSequence": [],
    }
    assert song_doc_to_content(doc) == {
        "name": "Untitled",
        "bpm": 120,
        "timeSignature": "4/4",
        "schemaVersion": None,
        "timeline": [],
        "totalBars": 0,
    }


def test_song_doc_with_junk_reads_without_raising() -> None:
    doc = doc_from(song_content_to_update(SEED_SONG))
    with doc.transaction():
        meta = doc.get(META, type=Map)
        meta["bpm"] = "fast"
        meta["timeSignature"] = 4
        timeline = doc.get(TIMELINE, type=Map)
        timeline["x" * 65] = Map({"loopId": "l", "startBar": 0, "duration": 1})  # id too long
        timeline["neg"] = Map({"loopId": "l", "startBar": -1, "duration": 1})
        timeline["nan"] = Map({"loopId": "l", "startBar": float("nan"), "duration": 1})
        timeline["inf"] = {"loopId": "l", "startBar": 0, "duration": float("inf")}
        timeline["str"] = "block"
        timeline["ok"] = {"loopId": "l", "startBar": 2.0, "duration": 3.0, "color": "blue"}
    content = song_doc_to_content(doc)
    assert content["bpm"] == 120 and content["timeSignature"] == "4/4"
    ids = [b["id"] for b in content["timeline"]]
    assert ids == ["block-1", "ok", "block-2", "block-3"]
    assert content["timeline"][1] == {"id": "ok", "loopId": "l", "startBar": 2, "duration": 3}
    assert content["totalBars"] == 16
    assert song_doc_to_content(doc_from(song_content_to_update(content))) == content


def test_oversized_collections_are_cut_at_the_limits() -> None:
    doc = new_doc()
    with doc.transaction():
        steps = doc.get(STEPS, type=Map)
        for i in range(MAX_STEPS + 50):
            step = {"step": i % 64, "soundId": f"s{i // 64:03d}", "velocity": 0.5}
            steps[step_key(step)] = Map(step)
    content = loop_doc_to_content(doc)
    assert len(content["iconSequence"]) == MAX_STEPS
    assert content["iconSequence"][0] == {"step": 0, "soundId": "s000", "velocity": 0.5}


def test_numbers_written_by_javascript_clients_read_as_ints() -> None:
    # Yjs numbers are float64; pycrdt hands them back as floats
    doc = new_doc()
    add_step(doc, step=5.0, soundId="kick", row=1.0, pitch=36.0, duration16=2.0, velocity=1)
    doc.get(META, type=Map).update({"name": "n", "length": 2.0, "bpm": 90.0})
    content = loop_doc_to_content(doc)
    assert content["length"] == 2 and type(content["length"]) is int
    assert content["bpm"] == 90 and type(content["bpm"]) is int
    step = content["iconSequence"][0]
    assert step == {"step": 5, "soundId": "kick", "velocity": 1.0, "pitch": 36, "row": 1, "duration16": 2}
    assert all(type(step[k]) is int for k in ("step", "pitch", "row", "duration16"))
    assert type(step["velocity"]) is float
