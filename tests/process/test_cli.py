"""The ``musicplayground`` command as an operator uses it: real processes, real sockets."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import subprocess
import uuid
from pathlib import Path

import asyncpg
import pytest
import requests

from tests.conftest import TEST_SECRET
from tests.helpers import LOOP
from tests.server_process import ServerProcess, free_port, run_cli
from tests.services import fresh_postgres_database

# Each CLI run starts a Python process; on a loaded machine several take well over a minute.
SLOW = pytest.mark.timeout(300)


def test_help_explains_every_command() -> None:
    top = run_cli("--help", env={})
    assert top.returncode == 0
    assert "serve" in top.stdout and "db" in top.stdout
    serve = run_cli("serve", "--help", env={})
    assert "--port" in serve.stdout and "--host" in serve.stdout and "$PORT" in serve.stdout
    db = run_cli("db", "--help", env={})
    assert "upgrade" in db.stdout and "current" in db.stdout


@SLOW
def test_serve_on_an_empty_directory_migrates_and_serves(tmp_path: Path) -> None:
    env = {"DATA_DIR": str(tmp_path / "data"), "LOG_FORMAT": "json"}
    with ServerProcess(env, log_path=tmp_path / "server.log") as server:
        session = requests.post(f"{server.url}/api/auth/anonymous", timeout=5).json()
        headers = {"Authorization": f"Bearer {session['token']}"}
        created = requests.post(f"{server.url}/api/loops", json=LOOP, headers=headers, timeout=5)
        assert created.status_code == 201, created.text
        assert requests.get(f"{server.url}/readyz", timeout=5).status_code == 200
        servers = requests.get(f"{server.url}/api/openapi.json", timeout=5).json()["servers"]
        assert servers == [{"url": f"http://localhost:{server.port}"}]
        assert server.terminate() == 0
    lines = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    messages = [line["message"] for line in lines]
    assert "migrating the SQLite database from revision none" in messages
    access = [line for line in lines if line["logger"] == "musicplayground.access"]
    created_line = next(line for line in access if '"POST /api/loops"' in line["message"])
    assert created_line["request_id"] == created.headers["X-Request-Id"] and created_line["status"] == 201


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The refusal of a start: a non-zero exit and exactly one line, no traceback."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and " INFO " not in line]
    assert len(lines) == 1, result.stderr
    return lines[0]


@SLOW
def test_a_busy_port_is_one_line_and_leaves_nothing_behind(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = one_line_error(
            run_cli("serve", env={"DATA_DIR": str(data), "HOST": "127.0.0.1", "PORT": str(port)})
        )
        assert f"cannot listen on 127.0.0.1:{port}" in line and "in use" in line
    assert not data.exists()


@SLOW
def test_bad_settings_and_unreachable_redis_refuse_the_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    line = one_line_error(
        run_cli("serve", env={"DATA_DIR": str(data), "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    )
    assert line.startswith("Error: REDIS_URL unreachable: redis://127.0.0.1:")
    bad = run_cli("serve", env={"DATA_DIR": str(data), "PORT": "eighty", "LOG_LEVEL": "LOUD"})
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "PORT must be an integer" in bad.stderr and "LOG_LEVEL must be one of" in bad.stderr
    result = run_cli("db", "upgrade", env={"DATABASE_URL": "mysql://x", "DATA_DIR": str(data)})
    assert "DATABASE_URL must be a postgresql:// or sqlite:// URL" in one_line_error(result)
    assert not data.exists()


def test_config_prints_the_effective_settings_with_secrets_masked(tmp_path: Path) -> None:
    env = {
        "DATA_DIR": str(tmp_path),
        "SECRET_KEY": TEST_SECRET,
        "METRICS_TOKEN": "scrape-token",
        "LOG_FORMAT": "json",
    }
    result = run_cli("config", env=env)
    assert result.returncode == 0, result.stderr
    shown = dict(line.split(None, 1) for line in result.stdout.splitlines())
    assert shown["LOG_FORMAT"] == "json" and shown["PORT"] == "3001"
    assert shown["SECRET_KEY"] == "*** (set)" and shown["METRICS_TOKEN"] == "*** (set)"
    assert TEST_SECRET not in result.stdout and "scrape-token" not in result.stdout
    generated = run_cli("config", env={"DATA_DIR": str(tmp_path)})
    assert generated.returncode == 0, generated.stderr
    shown = dict(line.split(None, 1) for line in generated.stdout.splitlines())
    assert shown["SECRET_KEY"] == f"(not set: a generated key is kept in {tmp_path / 'secret_key'})"


@SLOW
def test_embedded_default_serves_and_keeps_data_across_restarts(tmp_path: Path) -> None:
    env = {"DATA_DIR": str(tmp_path / "data")}
    upgraded = run_cli("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert (tmp_path / "data" / "musicplayground.sqlite3").exists()

    with ServerProcess(env, log_path=tmp_path / "server.log") as server:
        session = requests.post(f"{server.url}/api/auth/anonymous", timeout=5).json()
        headers = {"Authorization": f"Bearer {session['token']}"}
        loop = requests.post(f"{server.url}/api/loops", json=LOOP, headers=headers, timeout=5).json()
        assert server.terminate() == 0

    # The generated signing key is kept too, so the old token still works.
    with ServerProcess(env, log_path=tmp_path / "server.log") as server:
        got = requests.get(f"{server.url}/api/loops/{loop['id']}", headers=headers, timeout=5)
        assert got.status_code == 200 and got.json() == {**loop, "samples": []}


@SLOW
def test_postgres_behind_is_refused_in_one_line_and_ahead_is_accepted(
    tmp_path: Path, postgres_url: str
) -> None:
    admin = postgres_url.replace("postgresql+asyncpg://", "postgresql://", 1).rsplit("/", 1)[0] + "/postgres"
    with fresh_postgres_database(admin) as empty:
        env = {"DATABASE_URL": empty, "SECRET_KEY": TEST_SECRET, "DATA_DIR": str(tmp_path / "data")}
        line = one_line_error(run_cli("serve", env={**env, "PORT": str(free_port())}))
        assert "schema is at revision none" in line and "run `musicplayground db upgrade`" in line
        assert not (tmp_path / "data").exists()
        assert run_cli("db", "upgrade", env=env).returncode == 0
        asyncio.run(_set_revision(empty, "9999_from_a_newer_release"))
        with ServerProcess(env, log_path=tmp_path / "server.log") as server:
            assert requests.get(f"{server.url}/readyz", timeout=5).status_code == 200
        assert "newer than this code's" in server.log()


async def _set_revision(url: str, revision: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("UPDATE alembic_version SET version_num = $1", revision)
    finally:
        await conn.close()


@SLOW
def test_postgres_mode(tmp_path: Path, postgres_url: str) -> None:
    pg_url = postgres_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    no_secret = run_cli("serve", env={"DATABASE_URL": pg_url, "DATA_DIR": str(tmp_path)})
    assert no_secret.returncode != 0 and "SECRET_KEY is required" in no_secret.stderr
    env = {"DATABASE_URL": pg_url, "SECRET_KEY": TEST_SECRET, "DATA_DIR": str(tmp_path)}
    assert run_cli("db", "upgrade", env=env).returncode == 0
    with ServerProcess(env, log_path=tmp_path / "server.log") as server:
        session = requests.post(f"{server.url}/api/auth/anonymous", timeout=5)
        assert session.status_code == 201
        ready = requests.get(f"{server.url}/readyz", timeout=5).json()
        assert ready["status"] == "ok" and ready["bus"]["backend"] == "MemoryBus"  # no REDIS_URL


@SLOW
def test_purge_anonymous_prints_what_it_removes(tmp_path: Path) -> None:
    env = {"DATA_DIR": str(tmp_path / "data")}
    assert run_cli("db", "upgrade", env=env).returncode == 0
    database = tmp_path / "data" / "musicplayground.sqlite3"
    stale, active = uuid.uuid4(), uuid.uuid4()
    with sqlite3.connect(database) as conn:
        for user_id, days in ((stale, 200), (active, 3)):
            conn.execute(
                "INSERT INTO users (id, is_anonymous, created_at, updated_at, last_seen_at) "
                "VALUES (?, 1, datetime('now'), datetime('now'), datetime('now', ?))",
                (user_id.hex, f"-{days} days"),
            )
    preview = run_cli("purge-anonymous", "--dry-run", env=env)
    assert preview.returncode == 0, preview.stderr
    assert f"would remove {stale}" in preview.stdout and str(active) not in preview.stdout
    assert "1 anonymous accounts inactive for 90+ days would remove" in preview.stdout
    shorter = run_cli("purge-anonymous", "--inactive-days", "2", "--dry-run", env=env)
    assert str(stale) in shorter.stdout and str(active) in shorter.stdout
    purged = run_cli("purge-anonymous", env=env)
    assert purged.returncode == 0, purged.stderr
    assert f"removed {stale}" in purged.stdout
    with sqlite3.connect(database) as conn:
        assert [row[0] for row in conn.execute("SELECT id FROM users")] == [active.hex]
    refused = run_cli("purge-anonymous", "--inactive-days", "0", env=env)
    assert refused.returncode != 0 and "--inactive-days" in refused.stderr
