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

    def as_json(self, t: int) -> dict[str, Any]:
        lat = summary_ms(self.latencies)
        return {
            "t": t,
            "edits": self.edits,
            "deliveries": lat["count"],
            "p50_ms": lat["p50"],
            "p99_ms": lat["p99"],
            "errors": self.errors,
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


def write_plot(report: dict[str, Any], path: Path) -> None:
    """Latency percentiles and throughput per second, one PNG (needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    from matplotlib import pyplot as plt

    timeline = report["timeline"]
    t = [s["t"] for s in timeline]
    fig, (lat_ax, rate_ax) = plt.subplots(2, 1, sharex=True, figsize=(8, 5), dpi=80)
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99")):
        lat_ax.plot(t, [s[key] if s[key] is not None else math.nan for s in timeline], label=label)
    lat_ax.set_ylabel("latency (ms)")
    lat_ax.legend(loc="upper left")
    lat_ax.grid(alpha=0.3)
    config = report["config"]
    lat_ax.set_title(
        f"{config['rooms']} rooms x ({config['editors']} editors + {config['viewers']} viewers) "
        f"x {config['rate']} edits/s - {report['url']}",
        fontsize=9,
    )
    rate_ax.plot(t, [s["deliveries"] for s in timeline], label="deliveries/s")
    rate_ax.plot(t, [s["edits"] for s in timeline], label="edits/s")
    errors = [s["errors"] for s in timeline]
    if any(errors):
        rate_ax.plot(t, errors, label="errors/s", color="red")
    rate_ax.set_ylabel("per second")
    rate_ax.set_xlabel("seconds since start")
    rate_ax.legend(loc="upper left")
    rate_ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
