"""``bench.stock --rounds``: figures over several rounds are medians, ratios paired per round."""

from __future__ import annotations

from typing import Any

from bench.stock_report import figures, median_figures


def _round(ours_cpu: float, peer_cpu: float, ours_p50: float | None = 2.0) -> dict[str, dict[str, Any]]:
    def s2(cpu: float) -> dict[str, Any]:
        return {"server_cpu_ms_per_1000_deliveries": cpu}

    return {
        "ours-sqlite": {"s2": s2(ours_cpu), "idle": {"latency_ms": {"p50": ours_p50}}},
        "ysocketio": {"s2": s2(peer_cpu), "idle": {"latency_ms": {"p50": 2.0}}},
    }


def _row(rows: list[dict[str, Any]], label: str) -> dict[str, Any]:
    return next(row for row in rows if row["figure"] == label)


def test_ratios_are_the_median_of_each_rounds_own_ratio() -> None:
    # The machine slows down from round to round: paired ratios stay near 1 while the values
    # drift, so the median ratio is not the ratio of the medians (30 / 30 here).
    rounds = [figures(_round(20, 20)), figures(_round(30, 25)), figures(_round(40, 44))]
    cpu = _row(median_figures(rounds), "S2 server CPU ms / 1k deliveries")
    assert cpu["values"] == {"ours-sqlite": 30.0, "ysocketio": 25.0}
    assert cpu["ratios"]["ours-sqlite/ysocketio"] == 1.0  # of 1.0, 1.2 and 0.91
    assert cpu["ratio_ranges"]["ours-sqlite/ysocketio"] == [0.91, 1.2]
    assert cpu["ratios"]["ours-sqlite/hocuspocus"] is None  # no such peer in the run


def test_a_round_without_a_figure_does_not_count_for_it() -> None:
    rounds = [figures(_round(20, 20, ours_p50=None)), figures(_round(20, 20, ours_p50=3.0))]
    idle = _row(median_figures(rounds), "idle edit p50 ms")
    assert idle["values"]["ours-sqlite"] == 3.0
    assert idle["ratio_ranges"]["ours-sqlite/ysocketio"] == [1.5, 1.5]


def test_one_round_is_that_rounds_figures() -> None:
    one = figures(_round(21, 20))
    merged = median_figures([one])
    for row, single in zip(merged, one, strict=True):
        assert row["values"] == single["values"]
        assert row["ratios"] == single["ratios"]
