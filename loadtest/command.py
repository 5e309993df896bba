"""The ``musicplayground loadtest`` command (registered in ``musicplayground/cli.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from loadtest import report as reports
from loadtest.limits import MAX_DURATION, MAX_EDITORS, MAX_RATE, MAX_ROOMS, MAX_VIEWERS

if TYPE_CHECKING:
    from loadtest.runner import LoadTestConfig

EXIT_THRESHOLDS_MISSED = 1
EXIT_INTERRUPTED = 130


def _read_tokens(path: Path) -> tuple[str, ...]:
    lines = path.read_text().splitlines()
    return tuple(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))


@click.command(
    help="Load-test a running server: simulated editors and viewers over the real protocol. "
    "Creates its own anonymous users and loops (or uses the tokens of --tokens-file), edits at "
    "--rate per editor with a cursor move each, shows live progress, writes a JSON report "
    "(--report) and a PNG plot (--plot), and exits 1 when a threshold is missed, 130 on Ctrl-C "
    "(after writing the partial report)."
)
@click.option("--url", required=True, help="The server's base URL, e.g. http://127.0.0.1:3001.")
@click.option("--rooms", type=click.IntRange(1, MAX_ROOMS), default=2, show_default=True)
@click.option(
    "--editors", type=click.IntRange(1, MAX_EDITORS), default=3, show_default=True, help="Per room."
)
@click.option(
    "--viewers", type=click.IntRange(0, MAX_VIEWERS), default=0, show_default=True, help="Per room."
)
@click.option(
    "--rate",
    type=click.FloatRange(0, MAX_RATE, min_open=True),
    default=2.0,
    show_default=True,
    help="Edits per second per editor.",
)
@click.option(
    "--duration",
    type=click.FloatRange(0, MAX_DURATION, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds of load.",
)
@click.option(
    "--ramp",
    type=click.FloatRange(0, MAX_DURATION),
    default=0.0,
    show_default=True,
    help="Spread the connects over this many seconds.",
)
@click.option(
    "--token-mode", type=click.Choice(["anonymous", "file"]), default="anonymous", show_default=True
)
@click.option(
    "--tokens-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="token-mode file: access tokens, one a line; room i is token i mod n's.",
)
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), help="JSON report.")
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="PNG plot: latency percentiles and throughput over time (needs matplotlib).",
)
@click.option("--max-p99-ms", type=click.FloatRange(0, min_open=True), help="Fail above this p99 latency.")
@click.option("--min-delivered-pct", type=click.FloatRange(0, 100), help="Fail below this share delivered.")
def loadtest(
    url: str,
    rooms: int,
    editors: int,
    viewers: int,
    rate: float,
    duration: float,
    ramp: float,
    token_mode: str,
    tokens_file: Path | None,
    report_path: Path | None,
    plot_path: Path | None,
    max_p99_ms: float | None,
    min_delivered_pct: float | None,
) -> None:
    # Imported here: every other command (serve, db) starts without the client stack.
    from loadtest.runner import LoadTestConfig, LoadTestError

    if plot_path is not None and not reports.plot_available():
        raise click.UsageError(
            "--plot needs matplotlib: pip install 'musicplayground-server[loadtest]' "
            "(or pip install matplotlib)"
        )
    if (token_mode == "file") != (tokens_file is not None):
        raise click.UsageError("--tokens-file goes with --token-mode file, and only with it")
    config = LoadTestConfig(
        url=url,
        rooms=rooms,
        editors=editors,
        viewers=viewers,
        rate=rate,
        duration=duration,
        ramp=ramp,
        token_mode=token_mode,
        tokens=_read_tokens(tokens_file) if tokens_file else (),
    )
    try:
        config.check()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        result = asyncio.run(_run(config))
    except LoadTestError as exc:
        raise click.ClickException(str(exc)) from None
    failures = reports.verdict(result, max_p99_ms=max_p99_ms, min_delivered_pct=min_delivered_pct)
    result["thresholds"] = {
        "max_p99_ms": max_p99_ms,
        "min_delivered_pct": min_delivered_pct,
        "passed": not failures,
        "failures": failures,
    }
    if report_path is not None:
        report_path.write_text(json.dumps(result, indent=2) + "\n")
    if plot_path is not None:
        reports.write_plot(result, plot_path)
    _print_summary(result)
    if result["interrupted"]:
        sys.exit(EXIT_INTERRUPTED)
    if failures:
        for failure in failures:
            click.echo(f"FAILED: {failure}", err=True)
        sys.exit(EXIT_THRESHOLDS_MISSED)


async def _run(config: LoadTestConfig) -> dict[str, object]:
    from loadtest.runner import LoadTest

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows' loop
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    tty = sys.stderr.isatty()

    def progress(line: str) -> None:
        click.echo(("\r" + line + "\x1b[K") if tty else line, err=True, nl=not tty)

    try:
        return await LoadTest(config, progress).run(stop)
    finally:
        if tty:
            click.echo(err=True)
        with contextlib.suppress(NotImplementedError):
            loop.remove_signal_handler(signal.SIGINT)
            loop.remove_signal_handler(signal.SIGTERM)


def _print_summary(result: dict[str, object]) -> None:
    lat = result["latency_ms"]
    docs = result["documents"]
    assert isinstance(lat, dict) and isinstance(docs, dict)
    click.echo(
        f"{'interrupted after' if result['interrupted'] else 'done in'} {result['elapsed_s']} s: "
        f"{result['edits_sent']} edits, {result['deliveries']}/{result['expected_deliveries']} deliveries "
        f"({result['delivered_pct']} %), {result['deliveries_per_s']}/s, latency p50 {lat['p50']} ms "
        f"p99 {lat['p99']} ms max {lat['max']} ms; documents complete {docs['complete']}/{docs['checked']}"
    )
