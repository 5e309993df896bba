"""What a load test measured, as a JSON report, a threshold verdict and a PNG plot."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence (q in 0..100)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summary_ms(seconds: Iterable[float]) -> dict[str, float | int | None]:
    """count, p50/p95/p99/max/mean in milliseconds of durations given in seconds."""
    ms = sorted(v * 1000 for v in seconds)

    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 3)

    return {
        "count": len(ms),
        "p50": r(percentile(ms, 50)),
        "p95": r(percentile(ms, 95)),
        "p99": r(percentile(ms, 99)),
        "max": r(ms[-1] if ms else None),
        "mean": r(sum(ms) / len(ms) if ms else None),
    }


@dataclass
class Second:
    """What happened in one second of the run (by receive time; edits by send time)."""

    edits: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    disconnects: int = 0

    def as_json(self, t: int) -> dict[str, Any]:
        lat = summary_ms(self.latencies)
        return {
            "t": t,
            "edits": self.edits,
            "deliveries": lat["count"],
            "p50_ms": lat["p50"],
            "p99_ms": lat["p99"],
            "errors": self.errors,
            "disconnects": self.disconnects,
        }


def verdict(
    report: dict[str, Any], *, max_p99_ms: float | None, min_delivered_pct: float | None
) -> list[str]:
    """The thresholds the report misses, as sentences (empty: all met)."""
    failures = []
    p99 = report["latency_ms"]["p99"]
    if max_p99_ms is not None and (p99 is None or p99 > max_p99_ms):
        failures.append(f"p99 latency {p99} ms is above --max-p99-ms {max_p99_ms}")
    delivered = report["delivered_pct"]
    if min_delivered_pct is not None and (delivered is None or delivered < min_delivered_pct):
        failures.append(f"{delivered} % delivered is below --min-delivered-pct {min_delivered_pct}")
    return failures


def plot_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def summary_line(report: dict[str, Any]) -> str:
    """PASS or FAIL and the figures the thresholds judge, one line (the plot's title)."""
    thresholds = report.get("thresholds") or {}
    failed = bool(thresholds.get("failures")) or report.get("interrupted", False)
    verdict_word = "FAIL" if failed else "PASS"
    if report.get("interrupted"):
        verdict_word += " (interrupted)"
    p99 = report["latency_ms"]["p99"]
    limit = thresholds.get("max_p99_ms")
    p99_text = f"p99 {_number(p99)} ms" + (f" (max {_number(limit)})" if limit is not None else "")
    delivered = report["delivered_pct"]
    minimum = thresholds.get("min_delivered_pct")
    delivered_text = f"{_number(delivered)} % delivered" + (
        f" (min {_number(minimum)})" if minimum is not None else ""
    )
    errors = report["errors"]
    error_count = (
        errors["connect_failures"] + sum(errors["server_error_events"].values()) + errors["protocol_errors"]
    )
    return (
        f"{verdict_word}: {p99_text}, {delivered_text}, "
        f"{error_count} errors, {errors['lost_connections']} disconnects"
    )


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def build_figure(report: dict[str, Any]) -> Any:
    """The plot as a matplotlib Figure: latency percentiles with the --max-p99-ms line,
    edits and deliveries per second, errors and disconnects per second; the pass/fail
    summary line is the title."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    from matplotlib.figure import Figure

    timeline = report["timeline"]
    t = [s["t"] for s in timeline]
    fig = Figure(figsize=(8, 6.5), dpi=80)
    lat_ax, rate_ax, err_ax = fig.subplots(3, 1, sharex=True, height_ratios=(3, 2, 1.2))
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99")):
        lat_ax.plot(t, [s[key] if s[key] is not None else math.nan for s in timeline], label=label)
    max_p99 = (report.get("thresholds") or {}).get("max_p99_ms")
    if max_p99 is not None:
        lat_ax.axhline(max_p99, color="red", linestyle="--", label=f"--max-p99-ms {max_p99:g}")
    lat_ax.set_ylabel("latency (ms)")
    lat_ax.legend(loc="upper left", fontsize=8)
    lat_ax.grid(alpha=0.3)
    config = report["config"]
    lat_ax.set_title(
        f"{config['rooms']} rooms x ({config['editors']} editors + {config['viewers']} viewers) "
        f"x {config['rate']} edits/s - {report['url']}",
        fontsize=9,
    )
    summary = summary_line(report)
    fig.suptitle(summary, fontsize=11, color="red" if summary.startswith("FAIL") else "darkgreen")
    rate_ax.plot(t, [s["deliveries"] for s in timeline], label="deliveries/s")
    rate_ax.plot(t, [s["edits"] for s in timeline], label="edits/s")
    rate_ax.set_ylabel("per second")
    rate_ax.legend(loc="upper left", fontsize=8)
    rate_ax.grid(alpha=0.3)
    err_ax.step(t, [s["errors"] for s in timeline], where="post", label="errors/s", color="red")
    err_ax.step(
        t, [s.get("disconnects", 0) for s in timeline], where="post", label="disconnects/s", color="purple"
    )
    err_ax.set_ylim(0, max(1, *(s["errors"] for s in timeline), *(s.get("disconnects", 0) for s in timeline)))
    err_ax.set_ylabel("errors")
    err_ax.set_xlabel("seconds since start")
    err_ax.legend(loc="upper left", fontsize=8)
    err_ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def write_plot(report: dict[str, Any], path: Path) -> None:
    """The plot as a PNG (needs matplotlib); the summary line is also its Title text chunk."""
    fig = build_figure(report)
    fig.savefig(path, format="png", metadata={"Title": summary_line(report)})
