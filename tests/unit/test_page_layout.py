"""The drawing rules of the public pages (pure functions of the document content)."""

from __future__ import annotations

from rest.pages import grid_layout, timeline_lanes, timeline_svg


def test_steps_with_a_row_use_it_and_others_get_a_lane_per_sound() -> None:
    columns, labels, cells = grid_layout(
        {
            "length": 2,
            "iconSequence": [
                {"step": 3, "soundId": "drum-kick", "row": 0},
                {"step": 5, "soundId": "drum-snare", "row": 1},
                {"step": 1, "soundId": "synth"},
                {"step": 9, "soundId": "synth"},
            ],
        }
    )
    assert columns == 32 and labels == ["drum-kick", "drum-snare", "synth"]
    assert sorted((column, lane) for column, lane, _ in cells) == [(1, 2), (3, 0), (5, 1), (9, 2)]


def test_a_step_past_the_loop_length_widens_the_grid() -> None:
    columns, _labels, _cells = grid_layout({"length": 1, "iconSequence": [{"step": 40, "soundId": "x"}]})
    assert columns == 41


def test_overlapping_timeline_blocks_get_separate_lanes() -> None:
    blocks = [
        {"id": "a", "loopId": "l1", "startBar": 0, "duration": 4},
        {"id": "b", "loopId": "l2", "startBar": 2, "duration": 4},
        {"id": "c", "loopId": "l3", "startBar": 4, "duration": 2},
    ]
    assert [(block["id"], lane) for block, lane in timeline_lanes(blocks)] == [("a", 0), ("b", 1), ("c", 0)]


def test_timeline_escapes_ids_and_refuses_odd_colors() -> None:
    svg = timeline_svg(
        {"timeline": [{"id": '"><x', "loopId": "<l>", "startBar": 0, "duration": 1, "color": "red;x"}]}
    )
    assert "<x" not in svg and "<l>" not in svg and "red;x" not in svg
