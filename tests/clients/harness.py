"""Run the JS client kit's tests (clients/js, vitest) against a real ``musicplayground serve``.

The Python side starts the server process and a small control server on loopback, through which
a test in Node asks for what only the operator can do: stop the server (SIGTERM or SIGKILL) and
start it again on the same port and data, mint access tokens that are about to expire or have
expired (signed with the server's secret), make a user a moderator, and mint Firebase ID tokens
(from a fake Google certificate server). Node gets ``SERVER`` and ``CONTROL`` in its environment.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt

from identity.tokens import AUDIENCE, ISSUER, KEY_ID
from tests.server_process import ServerProcess, run_cli

ROOT = Path(__file__).resolve().parents[2]
KIT = ROOT / "clients" / "js"
FIXTURE = ROOT / "tests" / "fixtures" / "composer-localstorage.json"
SECRET = "kit-test-secret-key-that-is-long-enough-0123456789"
# A loaded 2-core machine can take half a minute just to import the server.
START_TIMEOUT = 180
NPM_MISSING = "node and npm are needed; run `npm ci` in clients/js (scripts/test does)"


def npm() -> str:
    found = shutil.which("npm")
    assert found is not None, NPM_MISSING
    assert (KIT / "node_modules" / "vitest" / "package.json").exists(), NPM_MISSING
    return found


def build_kit() -> None:
    """``npm run build`` (the library, then the demo bundle); fails the test with npm's output."""
    result = subprocess.run([npm(), "run", "build"], cwd=KIT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"npm run build failed:\n{result.stdout}\n{result.stderr}"


@dataclass
class VitestReport:
    passed: int
    failed: int
    failures: list[str]
    output: str


class KitServer:
    """A ``musicplayground serve`` the kit's tests may stop, restart and ask things of."""

    def __init__(self, tmp: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = tmp / "data"
        self.env = {
            "DATA_DIR": str(self.data_dir),
            "SECRET_KEY": SECRET,
            "RATE_LIMITS": "off",
            "LOG_LEVEL": "WARNING",
            "ACCESS_LOG": "off",
            **(env or {}),
        }
        self.server = ServerProcess(self.env, log_path=tmp / "server.log")
        self.mint_firebase: Callable[[str, bool], str] | None = None
        self.events: list[str] = []  # what the control server did, for the Python side's asserts
        self._control: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def control_url(self) -> str:
        assert self._control is not None
        host, port = self._control.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> KitServer:
        self.server.start(timeout=START_TIMEOUT)
        self._control = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self._control.serve_forever, name="kit-control", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._control is not None:
            self._control.shutdown()
            self._control.server_close()
        if self.server.proc is not None and self.server.proc.poll() is None:
            self.server.kill()

    # --- what Node may ask ----------------------------------------------------------------

    def act(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        """Do what the control server was asked (also callable from the Python side)."""
        self.events.append(action)
        if action == "stop":
            signal = body.get("signal", "TERM")
            code = self.server.terminate() if signal == "TERM" else self.server.kill()
            return {"exitCode": code}
        if action == "start":
            self.server.start(timeout=START_TIMEOUT)
            return {"server": self.url}
        if action == "mint-token":
            now = int(time.time())
            claims = {
                "iss": ISSUER,
                "aud": AUDIENCE,
                "sub": str(uuid.UUID(body["userId"])),
                "iat": now - 1,
                "exp": now + int(body["expiresIn"]),
                "anon": True,
                "typ": "access",
            }
            return {"token": jwt.encode(claims, SECRET, algorithm="HS256", headers={"kid": KEY_ID})}
        if action == "admin-grant":
            result = run_cli("admin", "grant", body["userId"], env=self.env)
            assert result.returncode == 0, result.stderr
            return {"ok": True}
        if action == "firebase-token":
            assert self.mint_firebase is not None, "this server runs without Firebase"
            return {"idToken": self.mint_firebase(body["uid"], bool(body.get("expired")))}
        raise ValueError(f"unknown control action {action!r}")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        harness = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                try:
                    answer, status = harness.act(self.path.strip("/"), body), 200
                except Exception as exc:  # reported to the Node test, which fails with it
                    answer, status = {"error": f"{type(exc).__name__}: {exc}"}, 500
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the test output is vitest's

        return Handler

    def run_vitest(
        self, *files: str, env: dict[str, str] | None = None, timeout: float = 600
    ) -> VitestReport:
        return run_vitest(
            *files,
            env={"SERVER": self.url, "CONTROL": self.control_url, "FIXTURE": str(FIXTURE), **(env or {})},
            timeout=timeout,
        )


def run_vitest(*files: str, env: dict[str, str] | None = None, timeout: float = 600) -> VitestReport:
    """``vitest run <files>`` in clients/js with a JSON report; every test result is returned."""
    report_path = KIT / "node_modules" / ".vitest-report" / f"{uuid.uuid4().hex}.json"
    report_path.parent.mkdir(parents=True, exist_ok=True)
    npx = shutil.which("npx")
    assert npx is not None, NPM_MISSING
    npm()
    try:
        result = subprocess.run(
            [
                npx,
                "vitest",
                "run",
                *files,
                "--reporter=json",
                f"--outputFile={report_path}",
                "--reporter=default",
            ],
            cwd=KIT,
            env={**os.environ, **(env or {}), "NO_COLOR": "1"},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        output = result.stdout + result.stderr
        assert report_path.exists(), f"vitest wrote no report (exit {result.returncode}):\n{output}"
        report = json.loads(report_path.read_text())
    finally:
        report_path.unlink(missing_ok=True)
    failures = [
        f"{test['fullName']}: {' '.join(test.get('failureMessages', []))[:2000]}"
        for suite in report["testResults"]
        for test in suite["assertionResults"]
        if test["status"] != "passed"
    ]
    failures += [
        f"{suite['name']}: {suite['message'][:2000]}"
        for suite in report["testResults"]
        if suite.get("message")
    ]
    return VitestReport(
        report["numPassedTests"],
        report["numFailedTests"] + report.get("numPendingTests", 0),
        failures,
        output,
    )


def assert_all_passed(report: VitestReport, *, at_least: int) -> None:
    """Every vitest test passed (none skipped) and there were at least ``at_least`` of them."""
    assert report.failures == [] and report.failed == 0, (
        "\n\n".join(report.failures) + "\n" + report.output[-5000:]
    )
    assert report.passed >= at_least, report.output[-5000:]
