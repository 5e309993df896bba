"""``musicplayground loadtest`` against a real server process, checked against what the server
stored (every edit the tool reports is in the loops it reads back over REST) and against the
server's own counters (``/metrics``)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from pathlib import Path

import pytest
import requests
from PIL import Image

from tests.conftest import TEST_SECRET
from tests.helpers import samples
from tests.server_process import CLI, ServerProcess, run_cli


def _stored_cells(url: str, loop_id: str, token: str) -> list[dict[str, object]]:
    resp = requests.get(
        f"{url}/api/loops/{loop_id}", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert resp.status_code == 200
    return [s for s in resp.json()["iconSequence"] if s["soundId"] == "loadtest"]


def _server_counters(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The server's own metrics (``/metrics``), keyed as :func:`tests.helpers.samples` keys them."""
    resp = requests.get(f"{url}/metrics", timeout=10)
    assert resp.status_code == 200
    return samples(resp.text)


def _owner_tokens(url: str, count: int) -> list[str]:
    return [requests.post(f"{url}/api/auth/anonymous", timeout=10).json()["token"] for _ in range(count)]


# Each test starts a server and the CLI as processes: slow on a busy machine, never timed.
pytestmark = pytest.mark.timeout(300)


async def test_loadtest_report_agrees_with_the_server(tmp_path: Path, database_url: str) -> None:
    env = {
        "DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": database_url,
        "SECRET_KEY": TEST_SECRET,
        "LOG_LEVEL": "WARNING",
    }
    report_path, plot_path = tmp_path / "report.json", tmp_path / "plot.png"
    tokens_file = tmp_path / "tokens.txt"
    with ServerProcess(env, log_path=tmp_path / "server.log") as server:
        tokens = _owner_tokens(server.url, 2)
        tokens_file.write_text("# two users, one loop each\n" + "\n".join(tokens) + "\n")
        done = await asyncio.to_thread(
            run_cli,
            "loadtest", "--url", server.url, "--rooms", "2", "--editors", "3", "--viewers", "1",
            "--rate", "4", "--duration", "4", "--token-mode", "file", "--tokens-file", str(tokens_file),
            "--report", str(report_path), "--plot", str(plot_path), "--min-delivered-pct", "100",
            env={},
            timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        report = json.loads(report_path.read_text())

        # Every edit the tool reports as sent is a distinct cell of the stored loops (each editor
        # makes fewer edits than it has cells), read back by us over REST: no more, no less.
        assert report["edits_sent"] >= 2 * 3 * 4  # at least a second's worth of 6 editors at 4/s
        stored = [
            _stored_cells(server.url, loop, token)
            for loop, token in zip(report["loops"], tokens, strict=True)
        ]
        assert sum(len(cells) for cells in stored) == report["edits_sent"]
        # The server counted the same edits: each applied once, each relayed once it was durable.
        counters = _server_counters(server.url)
        assert counters[("musicplayground_updates_applied_total", ())] == report["edits_sent"]
        assert counters[("musicplayground_updates_relayed_total", ())] == report["edits_sent"]

    # Each edit reaches the room's other 2 editors and its viewer, once each.
    assert report["expected_deliveries"] <= 3 * report["edits_sent"]
    assert report["expected_deliveries"] >= 3 * report["edits_sent"] - 3 * 6  # first edits before all synced
    assert report["deliveries"] == report["expected_deliveries"]
    assert report["delivered_pct"] == 100
    assert report["lost_deliveries"] == 0 and report["duplicates"] == 0
    assert report["latency_ms"]["count"] == report["deliveries"]
    assert report["latency_ms"]["p50"] > 0
    assert sum(s["deliveries"] for s in report["timeline"]) == report["deliveries"]
    assert sum(s["edits"] for s in report["timeline"]) == report["edits_sent"]
    assert report["sockets"]["connected"] == 2 * 4
    assert report["documents"] == {"checked": 2, "complete": 2, "missing_cells": 0, "problems": []}
    assert report["errors"]["connect_failures"] == 0 and report["errors"]["protocol_errors"] == 0
    assert report["thresholds"]["passed"] is True
    with Image.open(plot_path) as png:  # decodes; the verdict is the title and the PNG's Title
        png.load()
        assert png.info["Title"].startswith("PASS: p99 ")
        assert png.info["Title"].endswith(" 100 % delivered (min 100), 0 errors, 0 disconnects")


def test_loadtest_exits_non_zero_when_a_threshold_is_missed(tmp_path: Path) -> None:
    env = {"DATA_DIR": str(tmp_path / "data"), "SECRET_KEY": TEST_SECRET, "LOG_LEVEL": "WARNING"}
    assert run_cli("db", "upgrade", env=env).returncode == 0
    report_path = tmp_path / "report.json"
    with ServerProcess(env, log_path=tmp_path / "server.log") as server:
        done = run_cli(
            "loadtest", "--url", server.url, "--rooms", "1", "--editors", "2", "--rate", "2",
            "--duration", "2", "--max-p99-ms", "0.000001", "--report", str(report_path),
            env={}, timeout=120,
        )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAILED: p99 latency" in done.stderr
    report = json.loads(report_path.read_text())
    assert report["thresholds"]["passed"] is False
    assert report["deliveries"] > 0


def test_loadtest_rejects_runs_outside_its_bounds() -> None:
    done = run_cli("loadtest", "--url", "http://127.0.0.1:9", "--rooms", "400", "--editors", "10", env={})
    assert done.returncode == 2
    assert "sockets" in done.stderr


def test_ctrl_c_stops_the_run_with_a_partial_report(tmp_path: Path) -> None:
    env = {"DATA_DIR": str(tmp_path / "data"), "SECRET_KEY": TEST_SECRET, "LOG_LEVEL": "WARNING"}
    assert run_cli("db", "upgrade", env=env).returncode == 0
    report_path = tmp_path / "report.json"
    with ServerProcess(env, log_path=tmp_path / "server.log") as server:
        args = ["loadtest", "--url", server.url, "--rooms", "1", "--editors", "2", "--rate", "5",
                "--duration", "600", "--report", str(report_path)]  # fmt: skip
        with subprocess.Popen([*CLI, *args], stderr=subprocess.PIPE, text=True) as tool:
            try:
                assert tool.stderr is not None
                for line in tool.stderr:  # the progress line, once a second
                    if "edits " in line and " edits 0 " not in line:
                        break
                tool.send_signal(signal.SIGINT)
                assert tool.wait(timeout=60) == 130
            finally:
                if tool.poll() is None:
                    tool.kill()
    report = json.loads(report_path.read_text())
    assert report["interrupted"] is True
    assert report["elapsed_s"] < 600
    assert report["edits_sent"] > 0
    assert report["documents"]["checked"] == 1
