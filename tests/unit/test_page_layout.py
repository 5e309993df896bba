"""The drawing rules of the public pages (pure functions of the document content: pages.markup)."""

from __future__ import annotations

import re

from pages import timing
from pages.markup import MAX_LANES, grid_svg, lane_labels, loop_lanes, timeline_lanes, timeline_svg


def drawn_steps(svg: str) -> int:
    """The step rectangles: those inside the lanes' ``<g class="steps">`` groups."""
    return sum(group.split("</g>")[0].count("<rect") for group in svg.split('<g class="steps"')[1:])


def test_one_lane_per_sound_in_the_kits_order_with_its_name() -> None:
    loop = {
        "length": 2,
        "iconSequence": [
            {"step": 3, "soundId": "synth-lead"},
            {"step": 5, "soundId": "drum-kick"},
            {"step": 1, "soundId": "mystery"},
            {"step": 9, "soundId": "sample:abc"},
        ],
    }
    lanes = loop_lanes(loop, {"abc": "My clap"})
    assert [lane.label for lane in lanes] == ["Kick", "Lead", "mystery", "My clap"]  # then ids A-Z
    assert "<li" in lane_labels(lanes) and "My clap" in lane_labels(lanes)
    svg = grid_svg(loop, lanes)
    assert 'data-columns="32"' in svg and 'data-lanes="4"' in svg
    assert drawn_steps(svg) == 4


def test_positions_past_the_loop_are_not_drawn_and_long_steps_are_wide() -> None:
    loop = {
        "length": 1,
        "iconSequence": [{"step": 40, "soundId": "x"}, {"step": 14, "soundId": "x", "duration16": 8}],
        "chordProgression": [{"bar": 0, "chord": "C"}, {"bar": 3, "chord": "G"}, {"bar": 9, "chord": "F"}],
    }
    svg = grid_svg(loop, loop_lanes(loop))
    assert 'data-columns="16"' in svg
    assert re.findall(r'<rect x="(\d+)" width="(\d+)"', svg) == [("226", "30")]  # 2 columns left of 8
    assert [s.name for s in timing.chord_spans(loop)] == ["C", "G"]  # beats 0 and 3 of 4
    assert ">C</text>" in svg and ">G</text>" in svg and ">F</text>" not in svg


def test_past_max_lanes_the_other_sounds_share_the_last_lane() -> None:
    loop = {"length": 8, "iconSequence": [{"step": i % 128, "soundId": f"s{i:04}"} for i in range(2048)]}
    lanes = loop_lanes(loop)
    assert len(lanes) == MAX_LANES and lanes[-1].label == f"{2048 - MAX_LANES + 1} other sounds"
    assert drawn_steps(grid_svg(loop, lanes)) == 2048


def test_overlapping_timeline_blocks_get_separate_lanes() -> None:
    blocks = timing.song_blocks(
        {
            "timeline": [
                {"id": "a", "loopId": "l1", "startBar": 0, "duration": 4},
                {"id": "b", "loopId": "l2", "startBar": 2, "duration": 4},
                {"id": "c", "loopId": "l3", "startBar": 4, "duration": 2},
            ]
        }
    )
    assert [(block.id, lane) for block, lane in timeline_lanes(blocks)] == [("a", 0), ("b", 1), ("c", 0)]


def test_timeline_names_blocks_after_their_loops_escapes_and_refuses_odd_colors() -> None:
    song = {
        "timeline": [
            {"id": '"><x', "loopId": "<l>", "startBar": 0, "duration": 1, "color": "red;x"},
            {"id": "b", "loopId": "L2", "startBar": 1, "duration": 2},
        ]
    }
    svg = timeline_svg(song, {"L2": "Chorus <b>"})
    assert "<x" not in svg and "<l>" not in svg and "red;x" not in svg
    assert ">Loop</text>" in svg and ">Chorus &lt;b&gt;</text>" in svg
