"""Fixtures of the client-kit tests: the kit built once per run, a real server per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clients.harness import KitServer, build_kit


@pytest.fixture(scope="session")
def kit_built() -> None:
    build_kit()


@pytest.fixture
def kit_server(tmp_path: Path, kit_built: None) -> Iterator[KitServer]:
    server = KitServer(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()
