"""``bench.stock``'s report: pairs with a baseline target, p50 differences, the Postgres floor,
the markdown page, and the workloads of issue 31."""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bench.baseline import BaselineError, resolve
from bench.common import REPO, checkout_env
from bench.stock import WORKLOADS, result_paths, with_baseline
from bench.stock_report import comparison_lines, figures, markdown, median_figures


def _edit(p50: float, cpu: float, **extra: Any) -> dict[str, Any]:
    return {
        "latency_ms": {"p50": p50, "p99": 4 * p50},
        "delivered_pct": 100.0,
        "rooms_converged": 10,
        "server_cpu_util": cpu / 100,
        "server_cpu_ms_per_1000_deliveries": 10 * cpu,
        **extra,
    }


def _round(ours: float, base: float, peer: float) -> dict[str, dict[str, Any]]:
    """One round's M10 results: CPU % (and p50 ms) of the current code, its baseline, the peer."""
    return {
        "ours-sqlite": {"m10": _edit(ours / 10, ours, backend="sqlite")},
        "ours-sqlite@base": {"m10": _edit(base / 10, base, backend="sqlite")},
        "ysocketio": {"m10": _edit(peer / 10, peer, backend=None)},
    }


def _row(rows: list[dict[str, Any]], label: str) -> dict[str, Any]:
    return next(row for row in rows if row["figure"] == label)


def test_the_current_code_is_paired_with_its_baseline_round_by_round() -> None:
    # The machine slows by half in round 2: the values drift, the paired ratio does not.
    rounds = [figures(_round(20, 20, 16)), figures(_round(42, 40, 30)), figures(_round(21, 20, 17))]
    cpu = _row(median_figures(rounds), "M10 server CPU %")
    assert cpu["values"] == {"ours-sqlite": 21.0, "ours-sqlite@base": 20.0, "ysocketio": 17.0}
    assert cpu["ratios"]["ours-sqlite/ours-sqlite@base"] == 1.05  # of 1.0, 1.05 and 1.05
    assert cpu["ratio_ranges"]["ours-sqlite/ours-sqlite@base"] == [1.0, 1.05]
    assert cpu["ratios"]["ours-sqlite@base/ysocketio"] == 1.25  # the baseline against the peer too
    assert not any(name.endswith("@base@base") for name in cpu["ratios"])


def test_p50_figures_are_also_paired_as_differences() -> None:
    rounds = [figures(_round(20, 20, 16)), figures(_round(42, 40, 30)), figures(_round(21, 20, 17))]
    p50 = _row(median_figures(rounds), "M10 p50 ms")
    assert p50["differences"]["ours-sqlite-ysocketio"] == 0.4  # of 0.4, 1.2 and 0.4
    assert p50["difference_ranges"]["ours-sqlite-ysocketio"] == [0.4, 1.2]
    assert "differences" not in _row(median_figures(rounds), "M10 p99 ms")


def test_baseline_comparison_names_only_the_figures_that_moved_by_more_than_5_percent() -> None:
    rows = median_figures([figures(_round(30, 20, 16))])  # CPU 1.5x the baseline's
    lines = comparison_lines(rows, ["ours-sqlite", "ours-sqlite@base", "ysocketio"])
    assert lines[0].startswith("ours-sqlite against ours-sqlite@base: 2 of 6 figures within ±5%")
    moved = [line.strip() for line in lines[1:]]
    assert "M10 server CPU % ours-sqlite / ours-sqlite@base: 1.50 (worse)" in moved
    assert "M10 p50 ms ours-sqlite / ours-sqlite@base: 1.50 (worse)" in moved
    assert len(moved) == 4  # p50, p99, CPU %, CPU per 1,000; delivered and converged are equal


def _idle(p50: float, floor: float | None, backend: str | None) -> dict[str, Any]:
    result: dict[str, Any] = {"backend": backend, "latency_ms": {"p50": p50}}
    if floor is not None:
        result["postgres_floor_ms"] = {"p50": floor, "p99": 3 * floor}
    return result


def test_the_idle_edit_is_judged_over_the_postgres_floor_against_the_peer() -> None:
    results = {
        "ours-sqlite": {"idle": _idle(3.0, None, "sqlite")},
        "ours-postgres": {"idle": _idle(5.0, 1.2, "postgres")},
        "ysocketio": {"idle": _idle(2.5, None, None)},
    }
    rows = median_figures([figures(results)])
    over = _row(rows, "idle edit p50 over the Postgres floor ms")
    assert over["values"] == {"ours-sqlite": None, "ours-postgres": 3.8, "ysocketio": 2.5}
    assert over["differences"]["ours-postgres-ysocketio"] == 1.3
    assert _row(rows, "Postgres floor INSERT p99 ms")["values"]["ours-postgres"] == 3.6
    lines = comparison_lines(rows, list(results))
    assert lines == [
        "ours-postgres: idle edit p50 - Postgres floor p50 - y-socket.io idle edit p50 = +1.30 ms "
        "(target <= +1 ms: not met)"
    ]


def test_the_floor_is_the_machines_and_never_judged_against_the_baseline() -> None:
    results = {
        "ours-postgres": {"idle": _idle(5.0, 1.0, "postgres")},
        "ours-postgres@base": {"idle": _idle(5.1, 2.0, "postgres")},  # a noisy disk, the same code
    }
    rows = median_figures([figures(results)])
    assert _row(rows, "Postgres floor INSERT p50 ms")["ratios"]["ours-postgres/ours-postgres@base"] == 0.5
    lines = comparison_lines(rows, list(results))
    assert lines[0] == (
        "ours-postgres against ours-postgres@base: 1 of 2 figures within ±5% (median of the paired ratios):"
    )
    assert [line.strip() for line in lines[1:]] == [
        "idle edit p50 over the Postgres floor ms ours-postgres / ours-postgres@base: 1.29 (worse)"
    ]


def _report(results: dict[str, dict[str, Any]], baseline: bool) -> dict[str, Any]:
    rounds: list[dict[str, Any]] = [{"results": results, "figures": figures(results)}]
    return {
        "started_at": "2026-12-07T10:00:00Z",
        "command": "python -m bench.stock --scenarios m10 --baseline main",
        "git_commit": "abc1234",
        "git_dirty": False,
        "baseline": {"ref": "main", "commit": "ec1b1de3d8adf85f9a9b", "checkout": "/x"} if baseline else None,
        "machine": {
            "nproc": 2,
            "cpu_model": "AMD EPYC",
            "mem_total_mb": 24105,
            "platform": "Linux",
            "python": "3.11.7",
            "loadavg_at_start": [1.0, 0.5, 0.25],
        },
        "plan": {"warmup": 3.0, "duration": 20.0},
        "targets": list(results),
        "rounds": rounds,
        "figures": median_figures([r["figures"] for r in rounds]),
        "elapsed_s": 120.0,
        "loadavg_at_end": [2.0, 1.0, 0.5],
    }


def _tables(page: str) -> list[list[str]]:
    """The page's pipe tables, each checked to have every row as wide as its header."""
    tables: list[list[str]] = []
    previous = ""
    for line in page.splitlines():
        if line.startswith("|"):
            if not previous.startswith("|"):
                tables.append([])
            tables[-1].append(line)
        previous = line
    for table in tables:
        assert {line.count("|") for line in table} == {table[0].count("|")}, table
    return tables


def test_markdown_page_has_the_run_the_figures_and_the_pairs() -> None:
    results = _round(30, 20, 16)
    results["ysocketio"]["s2"] = {"error": "RuntimeError: load worker exited"}
    page = markdown(_report(results, baseline=True))
    assert page.startswith("# bench.stock, 2026-12-07T10:00:00Z\n")
    assert "- command: `python -m bench.stock --scenarios m10 --baseline main`" in page
    assert "- commit: abc1234\n" in page
    assert "- baseline: `main` = ec1b1de3d8" in page
    assert "2 cores, AMD EPYC" in page
    figures_table, differences_table = _tables(page)
    assert figures_table[0] == (
        "| figure | ours-sqlite | ours-sqlite@base | ysocketio | sqlite/ysocketio | sqlite/sqlite@base |"
    )
    assert "| M10 server CPU % | 30.00 | 20.00 | 16.00 | 1.88 | 1.50 |" in figures_table
    assert not any("S2" in line for line in figures_table)  # no row for a scenario not measured
    # ours minus the peer, ours minus the baseline; only the p50 figures
    assert differences_table[2:] == ["| M10 p50 ms | +1.40 | +1.00 |"]
    assert "  - M10 server CPU % ours-sqlite / ours-sqlite@base: 1.50 (worse)" in page
    assert "- round 1, ysocketio, s2: RuntimeError: load worker exited" in page


def test_markdown_page_without_a_baseline_has_no_baseline_column() -> None:
    results = _round(30, 20, 16)
    del results["ours-sqlite@base"]
    page = markdown(_report(results, baseline=False))
    assert "- baseline:" not in page and "@base" not in page
    assert _tables(page)[0][0] == "| figure | ours-sqlite | ysocketio | sqlite/ysocketio |"


def test_workloads_are_those_of_issue_31() -> None:
    assert WORKLOADS["m10"].offered_deliveries_per_s(WORKLOADS["m10"].rate or 0) == 2000
    assert WORKLOADS["m20"].offered_deliveries_per_s(WORKLOADS["m20"].rate or 0) == 4000
    s3 = WORKLOADS["s3"]
    assert (s3.sockets, s3.rooms, s3.editors, s3.rate) == (1000, 250, 4, 0.2)
    assert s3.staggered


def test_baseline_targets_sit_beside_their_current_target() -> None:
    assert with_baseline(["ours-sqlite", "ours-postgres", "ysocketio"]) == [
        "ours-sqlite",
        "ours-sqlite@base",
        "ours-postgres",
        "ours-postgres@base",
        "ysocketio",
    ]


def test_results_default_to_a_dated_file_and_latest() -> None:
    started = 1796637600.0  # 2026-12-07 10:00:00 UTC
    dated, latest = result_paths(argparse.Namespace(out=None), started)
    assert dated.name == "stock-20261207T100000Z.json"
    assert latest.name == "stock-latest.json" and latest.parent == dated.parent == REPO / "bench" / "results"
    assert result_paths(argparse.Namespace(out=Path("/tmp/x.json")), started) == [Path("/tmp/x.json")]


def test_a_baseline_ref_resolves_to_its_commit_or_fails_clearly() -> None:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
    assert resolve("HEAD") == head.stdout.strip()
    with pytest.raises(BaselineError, match="names no commit"):
        resolve("no-such-branch-of-this-repository")
    with pytest.raises(BaselineError, match="names no commit"):
        resolve("--output=/tmp/x")  # an option is never passed on to git as one


def test_a_checkouts_server_runs_with_its_own_venv_only() -> None:
    env = checkout_env(
        Path("/b/abc"), {"PATH": "/usr/bin", "PYTHONPATH": "/elsewhere", "VIRTUAL_ENV": "/here/.venv"}
    )
    assert env["VIRTUAL_ENV"] == "/b/abc/.venv"
    assert env["PATH"].split(os.pathsep)[0] == "/b/abc/.venv/bin"
    assert "PYTHONPATH" not in env
