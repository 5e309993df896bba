"""Fixtures of the client-kit tests: the kit built once per run, a real server per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clients.harness import KitServer, build_kit
from tests.server_process import run_cli
from tests.services import fresh_postgres_database, postgres_server


@pytest.fixture(scope="session")
def kit_built() -> None:
    build_kit()


@pytest.fixture
def kit_server(tmp_path: Path, kit_built: None) -> Iterator[KitServer]:
    """A server on the embedded default (SQLite in its data dir)."""
    server = KitServer(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def kit_server_any(request: pytest.FixtureRequest, tmp_path: Path, kit_built: None) -> Iterator[KitServer]:
    """A server on SQLite, then on a fresh Postgres database (migrated with ``db upgrade``)."""
    if request.param == "sqlite":
        yield request.getfixturevalue("kit_server")
        return
    with postgres_server() as admin_url, fresh_postgres_database(admin_url) as url:
        server = KitServer(tmp_path, {"DATABASE_URL": url})
        upgraded = run_cli("db", "upgrade", env=server.env)
        assert upgraded.returncode == 0, upgraded.stderr
        server.start()
        try:
            yield server
        finally:
            server.stop()
