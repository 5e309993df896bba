"""What changed between two contents, in music terms (music/changes.py)."""

from __future__ import annotations

from typing import Any

from pycrdt import Doc, Map

from music.changes import CellWatcher, cells, content_of_cells, diff
from music.kinds import DocKind
from music.reading import doc_to_content
from music.schema import step_key
from music.writing import content_to_update

LOOP: dict[str, Any] = {
    "name": "Loop",
    "length": 4,
    "bpm": 120,
    "color": "#FFD11A",
    "schemaVersion": None,
    "chordProgression": [{"bar": 0, "chord": "C"}, {"bar": 4, "chord": "G"}],
    "iconSequence": [
        {"step": 0, "soundId": "drum-kick", "velocity": 0.8},
        {"step": 4, "soundId": "synth-lead", "velocity": 0.8, "note": "G4"},
    ],
}
SONG: dict[str, Any] = {
    "name": "Song",
    "bpm": 100,
    "timeSignature": "4/4",
    "schemaVersion": None,
    "timeline": [
        {"id": "a", "loopId": "l1", "startBar": 0, "duration": 4},
        {"id": "b", "loopId": "l2", "startBar": 4, "duration": 4},
    ],
    "totalBars": 8,
}


def test_no_change_is_an_empty_diff() -> None:
    assert diff(DocKind.LOOP, LOOP, dict(LOOP)).as_json() == {"summary": {}, "changes": []}


def test_steps_chords_and_fields_are_counted_in_music_terms() -> None:
    after = {
        **LOOP,
        "bpm": 90,
        "name": "Renamed",
        "chordProgression": [{"bar": 0, "chord": "Am"}],
        "iconSequence": [
            {"step": 0, "soundId": "drum-kick", "velocity": 0.5},
            {"step": 8, "soundId": "drum-snare", "velocity": 0.8},
            {"step": 12, "soundId": "drum-snare", "velocity": 0.8},
        ],
    }
    found = diff(DocKind.LOOP, LOOP, after)
    assert found.summary() == {
        "chordsChanged": 1,
        "chordsRemoved": 1,
        "fieldsChanged": 2,
        "stepsAdded": 2,
        "stepsChanged": 1,
        "stepsRemoved": 1,
    }
    changes = {c["cell"]: c for c in found.as_json()["changes"]}
    assert changes["chord:0"]["from"] == {"bar": 0, "chord": "C"}
    assert changes["chord:0"]["to"] == {"bar": 0, "chord": "Am"}
    assert changes["field:bpm"] == {
        "cell": "field:bpm",
        "type": "field",
        "key": "bpm",
        "change": "changed",
        "from": 120,
        "to": 90,
    }
    assert changes['step:[4,null,"synth-lead","G4"]']["change"] == "removed"


def test_a_step_moved_to_another_cell_is_one_removed_and_one_added() -> None:
    after = {
        **LOOP,
        "iconSequence": [{"step": 1, "soundId": "drum-kick", "velocity": 0.8}, LOOP["iconSequence"][1]],
    }
    assert diff(DocKind.LOOP, LOOP, after).summary() == {"stepsAdded": 1, "stepsRemoved": 1}


def test_blocks_moved_recoloured_added_and_removed() -> None:
    after = {
        **SONG,
        "timeline": [
            {"id": "a", "loopId": "l1", "startBar": 2, "duration": 4},
            {"id": "c", "loopId": "l3", "startBar": 8, "duration": 2},
        ],
        "totalBars": 10,
    }
    recoloured = {**SONG, "timeline": [{**SONG["timeline"][0], "color": "#123456"}, SONG["timeline"][1]]}
    assert diff(DocKind.SONG, SONG, after).summary() == {
        "blocksAdded": 1,
        "blocksMoved": 1,
        "blocksRemoved": 1,
    }
    assert diff(DocKind.SONG, SONG, recoloured).summary() == {"blocksChanged": 1}


def test_cells_round_trip_to_the_same_content() -> None:
    for kind, content in ((DocKind.LOOP, LOOP), (DocKind.SONG, SONG)):
        back = content_of_cells(kind, cells(kind, content))
        assert back == {k: v for k, v in content.items() if k != "totalBars"}


def test_derived_fields_are_not_cells() -> None:
    assert "field:totalBars" not in cells(DocKind.SONG, SONG)


def test_the_cell_watcher_names_the_cells_an_update_touched() -> None:
    source: Doc[Any] = Doc()
    source.apply_update(content_to_update(DocKind.LOOP, LOOP))
    replica: Doc[Any] = Doc()
    replica.apply_update(source.get_update())
    watcher = CellWatcher(DocKind.LOOP, replica)
    try:
        before = source.get_state()
        snare = {"step": 8, "soundId": "drum-snare", "velocity": 0.8}
        source.get("steps", type=Map)[step_key(snare)] = Map(snare)
        source.get("chords", type=Map)["0"] = {"chord": "Am"}
        source.get("meta", type=Map)["bpm"] = 99
        replica.apply_update(source.get_update(before))
        touched = watcher.take()
        assert touched == {f"step:{step_key(snare)}", "chord:0", "field:bpm"}
        assert touched <= set(cells(DocKind.LOOP, doc_to_content(DocKind.LOOP, replica)))
        assert watcher.take() == set()
    finally:
        watcher.close()
