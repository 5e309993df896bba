"""What the pages will serve for the player: its own modules within the weight budget, and the
pinned browser builds of Tone.js and tonal present where the pages will load them from."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from pages import timing

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "pages" / "static"
OWN_SCRIPTS_BUDGET = 150 * 1024  # gzipped, besides the libraries (issue 30)
BUILDS = {"tone": "build/Tone.js", "tonal": "browser/tonal.min.js"}


def test_the_players_own_scripts_fit_the_page_weight_budget() -> None:
    scripts = sorted(STATIC.glob("*.js"))
    assert {p.name for p in scripts} >= {"player.js", "kit.js", "time.js", "pitch.js", "pattern.js"}
    gzipped = sum(len(gzip.compress(p.read_bytes(), 9)) for p in scripts)
    assert gzipped <= OWN_SCRIPTS_BUDGET


@pytest.mark.npm  # reads node_modules: scripts/test runs npm ci first, the quick tier does not
def test_the_libraries_are_pinned_and_their_browser_builds_installed() -> None:
    wanted = json.loads((ROOT / "package.json").read_text())["dependencies"]
    for name, build in BUILDS.items():
        version = wanted[name]
        assert version[0].isdigit(), f"{name} must be pinned exactly, not {version}"
        installed = json.loads((ROOT / "node_modules" / name / "package.json").read_text())["version"]
        assert installed == version
        assert (ROOT / "node_modules" / name / build).stat().st_size > 10_000


def test_loop_and_composer_field_names_read_alike() -> None:
    seed = {"length": 2, "chordProgression": [{"bar": 0, "chord": "C"}, {"bar": 6, "chord": "G"}]}
    composer = {"bars": 2, "chordProgression": seed["chordProgression"]}
    assert timing.loop_steps(seed) == timing.loop_steps(composer) == 32
    assert [(c.name, c.start, c.end) for c in timing.chord_spans(seed)] == [("C", 0, 24), ("G", 24, 32)]
    assert timing.step_position({"step": 5}) == timing.step_position({"bar": 5}) == 5
    assert timing.step_position({"step": None, "bar": 7}) == 7
    block = timing.block_span({"id": "b", "loopId": "l", "startBar": 2, "bars": 3})
    assert (block.start, block.end) == (32, 80)
    assert (
        timing.song_steps({"timeline": [{"startBar": 4, "duration": 8}, {"startBar": 0, "duration": 1}]})
        == 192
    )
