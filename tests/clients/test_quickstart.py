"""The README's "Front-end quick start", command by command, as a new user runs it.

The shell blocks are read from README.md and run as written, in order, with only the ports (and
HOME, DATA_DIR) pointed somewhere private: ``scripts/serve`` from the repository, the kit's
commands in a copy of ``clients/js`` (so the test does not disturb the working tree), the demo
page served and fetched, and the example of clients/js/README.md run in the new project.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.clients.harness import KIT, ROOT
from tests.clients.test_kit_package import readme_example
from tests.server_process import free_port

pytestmark = pytest.mark.timeout(1800)

EXPECTED_BLOCKS = [
    ["scripts/serve"],
    ["cd clients/js", "npm ci", "npm run build", "npm run demo"],
    [
        "npm pack",
        'KIT="$PWD/musicplayground-client-0.1.0.tgz"',
        "mkdir -p ~/my-app",
        "cd ~/my-app",
        "npm init -y",
        'npm install "$KIT"',
        "node example.mjs",
    ],
]


def quickstart_blocks() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Front-end quick start") :]
    section = section[: section.index("\n## ", 3)]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    return [[line.split("  #")[0].strip() for line in block.splitlines() if line.strip()] for block in blocks]


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_the_quick_start_commands_work_as_written(tmp_path: Path) -> None:
    blocks = quickstart_blocks()
    assert blocks == EXPECTED_BLOCKS, "README's quick start changed: update this test with it"
    api_port, demo_port = free_port(), free_port()
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "DATA_DIR": str(tmp_path / "data"), "LOG_LEVEL": "WARNING"}

    # Terminal 1: the server, from the repository.
    server_log = tmp_path / "serve.log"
    with server_log.open("wb") as out:
        server = subprocess.Popen(
            ["bash", "-c", blocks[0][0]],
            cwd=ROOT,
            env={**env, "PORT": str(api_port), "CORS_ORIGIN": f"http://localhost:{demo_port}"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    # Terminal 2: the kit, in a copy of the repository's clients/js.
    repo = tmp_path / "repo"
    shutil.copytree(
        KIT, repo / "clients" / "js", ignore=shutil.ignore_patterns("node_modules", "dist", "*.tgz")
    )
    demo_log = tmp_path / "demo.log"
    demo: subprocess.Popen[bytes] | None = None
    try:
        _wait_http(f"http://127.0.0.1:{api_port}/healthz", server, server_log)
        *setup, run_demo = blocks[1]
        subprocess.run(["bash", "-ec", "\n".join(setup)], cwd=repo, env=env, check=True, timeout=900)
        with demo_log.open("wb") as out:
            demo = subprocess.Popen(
                ["bash", "-c", f"cd clients/js && {run_demo}"],
                cwd=repo,
                env={**env, "PORT": str(demo_port)},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_http(f"http://localhost:{demo_port}/", demo, demo_log)
        page = requests.get(f"http://localhost:{demo_port}/", timeout=5).text
        assert "dist/demo.js" in page
        assert requests.get(f"http://localhost:{demo_port}/dist/demo.js", timeout=5).status_code == 200

        # The new project, with the example saved in it before its last command.
        (home / "my-app").mkdir()
        (home / "my-app" / "example.mjs").write_text(readme_example())
        result = subprocess.run(
            ["bash", "-ec", "\n".join(blocks[2])],
            cwd=repo / "clients" / "js",
            env={**env, "SERVER": f"http://127.0.0.1:{api_port}"},
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "status: synced" in result.stdout and "saved: 16 steps" in result.stdout
        assert (
            home / "my-app" / "node_modules" / "@musicplayground" / "client" / "dist" / "index.js"
        ).exists()
    finally:
        if demo is not None:
            _stop(demo)
        _stop(server)
