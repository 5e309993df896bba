"""The report of ``bench.stock``: a run's headline figures, their medians over rounds with
ratios (and, for p50 latencies, differences) paired per round, and the same tables printed
or written as a markdown file.

Pairs: every ``ours-*`` target (the current code and, with ``--baseline``, ``ours-*@base``)
against each peer, and the current code against its own baseline (``ours-sqlite`` /
``ours-sqlite@base``). A ratio or difference is taken within one round, from windows run
back to back, and only then summarized over the rounds (median, lowest and highest).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from bench.baseline import BASE_SUFFIX
from bench.common import fmt

PEERS = ("ysocketio", "hocuspocus", "ywebsocket")
SAME_BAND = 0.05  # "within ±5 % of the baseline"
FLOOR_TARGET_MS = 1.0  # issue 31: idle edit within 1 ms of (y-socket.io's idle edit + the floor)
FLOOR_ROW = "idle edit p50 over the Postgres floor ms"


def is_ours(name: str) -> bool:
    return name.startswith("ours")


def is_base(name: str) -> bool:
    return name.endswith(BASE_SUFFIX)


def short(name: str) -> str:
    return name.removeprefix("ours-")


@dataclass(frozen=True)
class Figure:
    """One headline figure: read from a target's result of ``scenario``. ``difference``: also
    paired as ours minus peer (p50 latencies, whose targets are "within +1 ms"). ``machine``:
    a figure of the machine, not of the code (the Postgres floor), left out of the verdict
    against the baseline (its ratio there shows the run's noise)."""

    scenario: str
    label: str
    read: Callable[[dict[str, Any]], float | None]
    lower_is_better: bool = True
    difference: bool = False
    machine: bool = False


def _over_floor(result: dict[str, Any]) -> float | None:
    """The idle edit's p50 less the Postgres floor's p50 measured beside it. The peers store
    nothing (their floor is 0); ours on SQLite has no Postgres floor."""
    p50 = result["latency_ms"]["p50"]
    backend = result.get("backend")
    if backend is None or p50 is None:
        return p50
    floor = result.get("postgres_floor_ms")
    if backend != "postgres" or floor is None or floor["p50"] is None:
        return None
    return round(p50 - floor["p50"], 3)


def _edit_figures(scenario: str, prefix: str) -> list[Figure]:
    """The figures of one measured edit window (S2, S3, M10, M20)."""
    return [
        Figure(scenario, f"{prefix} p50 ms", lambda r: r["latency_ms"]["p50"], difference=True),
        Figure(scenario, f"{prefix} p99 ms", lambda r: r["latency_ms"]["p99"]),
        Figure(scenario, f"{prefix} delivered %", lambda r: r["delivered_pct"], lower_is_better=False),
        Figure(scenario, f"{prefix} rooms converged", lambda r: r["rooms_converged"], lower_is_better=False),
        Figure(scenario, f"{prefix} server CPU %", lambda r: round(100 * r["server_cpu_util"], 1)),
        Figure(
            scenario,
            f"{prefix} server CPU ms / 1k deliveries",
            lambda r: r["server_cpu_ms_per_1000_deliveries"],
        ),
    ]


FIGURES: list[Figure] = [
    Figure("join", "connect p50 ms", lambda r: r["connect_ms"]["p50"]),
    Figure("join", "connect p95 ms", lambda r: r["connect_ms"]["p95"]),
    Figure("idle", "idle edit p50 ms", lambda r: r["latency_ms"]["p50"], difference=True),
    Figure("idle", "Postgres floor INSERT p50 ms", lambda r: r["postgres_floor_ms"]["p50"], machine=True),
    Figure("idle", "Postgres floor INSERT p99 ms", lambda r: r["postgres_floor_ms"]["p99"], machine=True),
    Figure("idle", FLOOR_ROW, _over_floor, difference=True),
    *_edit_figures("s2", "S2"),
    Figure("s2", "S2 Postgres CPU ms / 1k (ours)", lambda r: r["database_cpu_ms_per_1000_deliveries"]),
    Figure("s2", "S2 commits over 100 ms (ours)", lambda r: r["update_log_commits"]["over_100_ms"]),
    *_edit_figures("m10", "M10"),
    *_edit_figures("m20", "M20"),
    Figure("max", "MAX deliveries/s", lambda r: r["max_deliveries_per_s"], lower_is_better=False),
    Figure(
        "max",
        "MAX lossless deliveries/s (any p99)",
        lambda r: r.get("max_lossless_deliveries_per_s"),
        lower_is_better=False,
    ),
    Figure("max", "MAX server CPU ms / 1k deliveries", lambda r: r.get("server_cpu_ms_per_1000_deliveries")),
    Figure("s3", "S3 RSS KB / connection", lambda r: r["rss_per_connection_kb"]),
    *_edit_figures("s3", "S3"),
    Figure("scale", "SCALE RSS KB / connection", lambda r: r["rss_per_connection_kb"]),
    Figure("scale", "SCALE connect p95 ms", lambda r: r["connect_ms"]["p95"]),
    *_edit_figures("scale", "SCALE"),
]


def pairs(targets: Iterable[str]) -> list[tuple[str, str]]:
    """(ours, other) pairs of a run's targets: each ``ours-*`` against both peers (present
    or not), and the current code against its baseline where the run has it."""
    names = list(targets)
    out = []
    for ours in (t for t in names if is_ours(t)):
        out += [(ours, peer) for peer in PEERS]
        if not is_base(ours) and ours + BASE_SUFFIX in names:
            out.append((ours, ours + BASE_SUFFIX))
    return out


def figures(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One round's rows: each target's value, and the pairs' ratios (and differences)."""
    rows = []
    for figure in FIGURES:
        values: dict[str, float | None] = {}
        for target, by_scenario in results.items():
            result = by_scenario.get(figure.scenario)
            try:
                values[target] = figure.read(result) if result and "error" not in result else None
            except (KeyError, TypeError):
                values[target] = None
        ratios, differences = {}, {}
        for ours, other in pairs(values):
            a, b = values.get(ours), values.get(other)
            ratios[f"{ours}/{other}"] = round(a / b, 2) if a is not None and b else None
            if figure.difference:
                differences[f"{ours}-{other}"] = round(a - b, 3) if a is not None and b is not None else None
        row = {"figure": figure.label, "lower_is_better": figure.lower_is_better, "values": values}
        if figure.machine:
            row["machine"] = True
        row["ratios"] = ratios
        if figure.difference:
            row["differences"] = differences
        rows.append(row)
    return rows


def median_figures(rounds: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The rows of several rounds in one: each value the median of its rounds, each ratio
    and difference the median of the rounds' own (each taken within one round, so paired
    against the machine's drift), with ``ratio_ranges``/``difference_ranges`` their lowest
    and highest."""
    rows = []
    for i, first in enumerate(rounds[0]):
        per_round = [r[i] for r in rounds]
        values = {name: _spread(per_round, "values", name)[0] for name in first["values"]}
        row: dict[str, Any] = {
            "figure": first["figure"],
            "lower_is_better": first["lower_is_better"],
            "values": values,
        }
        if first.get("machine"):
            row["machine"] = True
        for key, ranges in (("ratios", "ratio_ranges"), ("differences", "difference_ranges")):
            if key in first:
                spread = {name: _spread(per_round, key, name) for name in first[key]}
                row[key] = {name: seen[0] for name, seen in spread.items()}
                row[ranges] = {name: seen[1] for name, seen in spread.items()}
        rows.append(row)
    return rows


def _spread(rows: list[dict[str, Any]], key: str, name: str) -> tuple[float | None, list[float] | None]:
    """The median of one cell over rounds (those that have it), and its [lowest, highest]."""
    seen = [row[key][name] for row in rows if row[key].get(name) is not None]
    if not seen:
        return None, None
    return round(statistics.median(seen), 3), [min(seen), max(seen)]


# --- tables and lines, printed or written as markdown ----------------------------------------


def _shown_pairs(targets: list[str]) -> list[tuple[str, str]]:
    """The pairs given a column: the current code against the run's peers and its baseline
    (the baseline against the peers is in the JSON)."""
    return [(o, p) for o, p in pairs(targets) if not is_base(o) and p in targets]


def _cell(value: float | None, span: list[float] | None, signed: bool = False) -> str:
    text = "-" if value is None else (f"{value:+.2f}" if signed else fmt(value))
    if span is not None and span[0] != span[1]:
        low, high = (f"{v:+.2f}" for v in span) if signed else (fmt(v) for v in span)
        text += f" ({low} to {high})" if signed else f" ({low}-{high})"
    return text


def _measured(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with a value (the scenarios a run left out have none)."""
    return [row for row in rows if any(v is not None for v in row["values"].values())]


def figure_table(rows: list[dict[str, Any]], targets: list[str]) -> list[list[str]]:
    """Every figure: each target's value, then the ratios (median, range over rounds)."""
    shown = _shown_pairs(targets)
    header = ["figure", *targets, *(f"{short(o)}/{short(p)}" for o, p in shown)]
    table = [header]
    for row in _measured(rows):
        cells = [row["figure"], *(fmt(row["values"].get(t)) for t in targets)]
        for o, p in shown:
            name = f"{o}/{p}"
            cells.append(_cell(row["ratios"].get(name), row.get("ratio_ranges", {}).get(name)))
        table.append(cells)
    return table


def difference_table(rows: list[dict[str, Any]], targets: list[str]) -> list[list[str]]:
    """The p50 figures as ours minus the other, in ms (the targets' "within +1 ms")."""
    shown = _shown_pairs(targets)
    table = [["figure (ms)", *(f"{short(o)}-{short(p)}" for o, p in shown)]]
    for row in _measured(rows):
        if "differences" in row:
            ranges = row.get("difference_ranges", {})
            names = [f"{o}-{p}" for o, p in shown]
            table.append(
                [row["figure"], *(_cell(row["differences"].get(n), ranges.get(n), True) for n in names)]
            )
    return table


def comparison_lines(rows: list[dict[str, Any]], targets: list[str]) -> list[str]:
    """Plain sentences: the current code against its baseline (which figures moved by more
    than ±5 %), and the idle edit over the Postgres floor against y-socket.io's (issue 31)."""
    lines = []
    for ours in (t for t in targets if is_ours(t) and not is_base(t) and t + BASE_SUFFIX in targets):
        name = f"{ours}/{ours}{BASE_SUFFIX}"
        judged, moved = 0, []
        for row in rows:
            ratio = row["ratios"].get(name)
            if ratio is None or row.get("machine"):
                continue
            judged += 1
            if abs(ratio - 1) > SAME_BAND:
                verdict = "better" if (ratio < 1) == row["lower_is_better"] else "worse"
                span = _cell(ratio, row.get("ratio_ranges", {}).get(name))
                moved.append(f"{row['figure']} {ours} / {ours}{BASE_SUFFIX}: {span} ({verdict})")
        lines.append(
            f"{ours} against {ours}{BASE_SUFFIX}: {judged - len(moved)} of {judged} figures within "
            f"±{SAME_BAND:.0%} (median of the paired ratios)" + (":" if moved else ".")
        )
        lines += [f"  {line}" for line in moved]
    floor = next((row for row in rows if row["figure"] == FLOOR_ROW), None)
    for ours in (t for t in targets if t.startswith("ours-postgres")):
        if floor is None or "ysocketio" not in targets:
            break
        name = f"{ours}-ysocketio"
        excess = floor["differences"].get(name)
        if excess is None:
            continue
        verdict = "met" if excess <= FLOOR_TARGET_MS else "not met"
        lines.append(
            f"{ours}: idle edit p50 - Postgres floor p50 - y-socket.io idle edit p50 = "
            f"{_cell(excess, floor.get('difference_ranges', {}).get(name), True)} ms "
            f"(target <= +{FLOOR_TARGET_MS:g} ms: {verdict})"
        )
    return lines


def errors(report: dict[str, Any]) -> list[str]:
    """Every scenario that could not run, as "round n, target, scenario: error"."""
    out = []
    for number, one in enumerate(report.get("rounds", []), 1):
        for target, by_scenario in one["results"].items():
            out += [
                f"round {number}, {target}, {scen}: {r['error']}"
                for scen, r in by_scenario.items()
                if "error" in r
            ]
    return out


def markdown_table(table: list[list[str]]) -> str:
    """A pipe table: the first column left-aligned, the others right-aligned."""
    header, *body = table
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---", *("---:" for _ in header[1:])]) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def markdown(report: dict[str, Any]) -> str:
    """The run as a markdown page to commit: what ran where, the figures, the pairs."""
    machine, plan, targets = report["machine"], report["plan"], report["targets"]
    rows = report["figures"]
    rounds = len(report["rounds"])
    dirty = " (uncommitted changes in the work tree)" if report.get("git_dirty") else ""
    baseline = report.get("baseline")
    lines = [
        f"# bench.stock, {report['started_at']}",
        "",
        f"- command: `{report['command']}`",
        f"- commit: {report['git_commit']}{dirty}",
        *([f"- baseline: `{baseline['ref']}` = {baseline['commit'][:10]}"] if baseline else []),
        f"- machine: {machine['nproc']} cores, {machine['cpu_model']}, {machine['mem_total_mb']} MB, "
        f"{machine['platform']}, Python {machine['python']}",
        f"- load average at start {_loadavg(machine['loadavg_at_start'])}, at end "
        f"{_loadavg(report.get('loadavg_at_end'))}; {report.get('elapsed_s')} s",
        f"- rounds: {rounds} (targets' order reversed every other round); windows: {plan['warmup']:g} s "
        f"warm-up, {plan['duration']:g} s measured",
        "",
        "Values are each target's median over the rounds; ratios and differences are the median of "
        "each round's own (paired within a round), with their lowest and highest in parentheses.",
        "",
        "## Figures",
        "",
        markdown_table(figure_table(rows, targets)),
    ]
    differences = difference_table(rows, targets)
    if len(differences) > 1 and len(differences[0]) > 1:
        lines += ["", "## p50 differences (ms)", "", markdown_table(differences)]
    comparisons = comparison_lines(rows, targets)
    if comparisons:
        lines += ["", "## Comparisons", ""]
        lines += [
            f"- {line.strip()}" if not line.startswith("  ") else f"  - {line.strip()}"
            for line in comparisons
        ]
    failed = errors(report)
    if failed:
        lines += ["", "## Errors", "", *(f"- {line}" for line in failed)]
    return "\n".join(lines) + "\n"


def _loadavg(values: list[float] | None) -> str:
    return "-" if not values else " ".join(f"{v:.2f}" for v in values)
