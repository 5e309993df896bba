"""The ``musicplayground`` command as an operator uses it: real processes, real sockets."""

from __future__ import annotations

from pathlib import Path

import requests

from tests.conftest import TEST_SECRET
from tests.helpers import LOOP
from tests.server_process import ServerProcess, run_cli


def test_help_explains_every_command() -> None:
    top = run_cli("--help", env={})
    assert top.returncode == 0
    assert "serve" in top.stdout and "db" in top.stdout
    serve = run_cli("serve", "--help", env={})
    assert "--port" in serve.stdout and "--host" in serve.stdout and "$PORT" in serve.stdout
    db = run_cli("db", "--help", env={})
    assert "upgrade" in db.stdout and "current" in db.stdout


def test_serve_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    env = {"DATA_DIR": str(tmp_path / "data")}
    server = ServerProcess(env, log_path=tmp_path / "server.log")
    try:
        server.start(timeout=20)
        raise AssertionError("server started on an empty database")
    except RuntimeError as exc:
        assert "musicplayground db upgrade" in str(exc)


def test_bad_configuration_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("db", "upgrade", env={"DATABASE_URL": "mysql://x", "DATA_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert "DATABASE_URL must be a postgresql:// or sqlite:// URL" in result.stderr
    result = run_cli("serve", env={"PORT": "eighty", "DATA_DIR": str(tmp_path)})
    assert result.returncode != 0 and "PORT must be an integer" in result.stderr


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


def test_postgres_mode(tmp_path: Path, postgres_url: str) -> None:
    pg_url = postgres_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    no_secret = run_cli("serve", env={"DATABASE_URL": pg_url, "DATA_DIR": str(tmp_path)})
    assert no_secret.returncode != 0 and "SECRET_KEY is required" in no_secret.stderr
    env = {"DATABASE_URL": pg_url, "SECRET_KEY": TEST_SECRET, "DATA_DIR": str(tmp_path)}
    assert run_cli("db", "upgrade", env=env).returncode == 0
    with ServerProcess(env, log_path=tmp_path / "server.log") as server:
        session = requests.post(f"{server.url}/api/auth/anonymous", timeout=5)
        assert session.status_code == 201
        assert requests.get(f"{server.url}/readyz", timeout=5).json() == {"status": "ok"}
