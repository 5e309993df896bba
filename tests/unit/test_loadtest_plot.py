"""The load test's PNG: the --max-p99-ms line, the errors/disconnects series and the pass/fail
summary in the title, read back from the decoded PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from loadtest import report as reports


def _report(
    p99s: list[float], errors: list[int], disconnects: list[int], delivered_pct: float
) -> dict[str, Any]:
    timeline = [
        {
            "t": t,
            "edits": 10,
            "deliveries": 30,
            "p50_ms": p99 / 4,
            "p99_ms": p99,
            "errors": e,
            "disconnects": d,
        }
        for t, (p99, e, d) in enumerate(zip(p99s, errors, disconnects, strict=True))
    ]
    return {
        "url": "http://127.0.0.1:1",
        "config": {"rooms": 2, "editors": 3, "viewers": 1, "rate": 4.0},
        "interrupted": False,
        "latency_ms": {"p99": max(p99s)},
        "delivered_pct": delivered_pct,
        "errors": {
            "connect_failures": 1,
            "server_error_events": {"rate_limited": 2},
            "protocol_errors": 0,
            "lost_connections": sum(disconnects),
        },
        "timeline": timeline,
    }


def _judge(report: dict[str, Any], max_p99_ms: float, min_delivered_pct: float) -> dict[str, Any]:
    failures = reports.verdict(report, max_p99_ms=max_p99_ms, min_delivered_pct=min_delivered_pct)
    report["thresholds"] = {
        "max_p99_ms": max_p99_ms,
        "min_delivered_pct": min_delivered_pct,
        "passed": not failures,
        "failures": failures,
    }
    return report


@pytest.mark.parametrize(
    ("max_p99_ms", "expected_title"),
    [
        (250.0, "PASS: p99 120 ms (max 250), 100 % delivered (min 99), 3 errors, 2 disconnects"),
        (100.0, "FAIL: p99 120 ms (max 100), 100 % delivered (min 99), 3 errors, 2 disconnects"),
    ],
)
def test_the_png_carries_the_verdict_the_threshold_line_and_the_error_series(
    tmp_path: Path, max_p99_ms: float, expected_title: str
) -> None:
    report = _judge(_report([20, 120, 40], [0, 3, 0], [0, 0, 2], 100.0), max_p99_ms, 99.0)
    path = tmp_path / "plot.png"
    reports.write_plot(report, path)

    with Image.open(path) as png:
        assert png.format == "PNG"
        png.load()  # decodes every pixel: a truncated or corrupt file raises here
        assert png.size == (640, 520)
        assert png.info["Title"] == expected_title

    figure = reports.build_figure(report)
    assert figure.get_suptitle() == expected_title
    latency, _rates, errors = figure.axes
    threshold = [line for line in latency.get_lines() if line.get_label() == f"--max-p99-ms {max_p99_ms:g}"]
    assert len(threshold) == 1 and list(threshold[0].get_ydata()) == [max_p99_ms, max_p99_ms]
    series = {line.get_label(): list(line.get_ydata()) for line in errors.get_lines()}
    assert series == {"errors/s": [0, 3, 0], "disconnects/s": [0, 0, 2]}


def test_a_missed_delivery_threshold_fails_the_title(tmp_path: Path) -> None:
    report = _judge(_report([20, 30], [0, 0], [0, 0], 97.5), 250.0, 100.0)
    reports.write_plot(report, tmp_path / "plot.png")
    with Image.open(tmp_path / "plot.png") as png:
        assert png.info["Title"].startswith("FAIL: p99 30 ms (max 250), 97.5 % delivered (min 100)")


def test_without_thresholds_the_title_has_the_figures_only(tmp_path: Path) -> None:
    report = _report([20, 30], [0, 0], [0, 0], 100.0)
    report["thresholds"] = {"max_p99_ms": None, "min_delivered_pct": None, "passed": True, "failures": []}
    figure = reports.build_figure(report)
    assert figure.get_suptitle() == "PASS: p99 30 ms, 100 % delivered, 3 errors, 0 disconnects"
    assert [line.get_label() for line in figure.axes[0].get_lines()] == ["p50", "p99"]
