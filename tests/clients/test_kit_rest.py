"""The kit's typed REST client and sessions against a real server (clients/js/test/integration)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.clients.harness import KitServer, assert_all_passed, run_vitest
from tests.firebase_fakes import FakeFirebase

# Each runs a vitest suite against a server process (and may restart it).
pytestmark = pytest.mark.timeout(1800)


def test_unit_tests_of_the_kit(kit_built: None) -> None:
    assert_all_passed(run_vitest("test/unit"), at_least=8)


@pytest.fixture
async def firebase_server(tmp_path: Path, kit_built: None) -> AsyncIterator[KitServer]:
    """A server with Firebase sign-in (a fake certificate server) and one-minute access tokens."""
    async with FakeFirebase(project_id="mp-kit") as fb:
        env = {
            "FIREBASE_PROJECT_ID": fb.project_id,
            "FIREBASE_CERT_URL": fb.cert_url,
            "ACCESS_TOKEN_TTL": "60",
        }
        server = KitServer(tmp_path, env)

        def mint(uid: str, expired: bool) -> str:
            if not expired:
                return fb.mint(uid)
            now = int(time.time())
            return fb.mint(uid, iat=now - 7200, exp=now - 3600, auth_time=now - 7200)

        server.mint_firebase = mint
        server.start()
        try:
            yield server
        finally:
            server.stop()


# The fake certificate server runs on this test's event loop: vitest runs in a thread meanwhile.
async def test_every_rest_operation(firebase_server: KitServer) -> None:
    report = await asyncio.to_thread(firebase_server.run_vitest, "test/integration/rest.test.ts")
    assert_all_passed(report, at_least=12)
    assert "admin-grant" in firebase_server.events


async def test_sessions_refresh_single_flight_firebase_and_linking(firebase_server: KitServer) -> None:
    report = await asyncio.to_thread(firebase_server.run_vitest, "test/integration/session.test.ts")
    assert_all_passed(report, at_least=9)
    assert "firebase-token" in firebase_server.events and "mint-token" in firebase_server.events


def test_storage_adapters_and_the_migration_of_the_fixture(kit_server_any: KitServer) -> None:
    assert_all_passed(kit_server_any.run_vitest("test/integration/storage.test.ts"), at_least=7)


def test_a_rate_limited_answer_carries_retry_after(tmp_path: Path, kit_built: None) -> None:
    env = {"RATE_LIMITS": "on", "RATE_LIMIT_ANONYMOUS_ACCOUNTS_PER_IP_PER_HOUR": "1"}
    server = KitServer(tmp_path, env).start()
    try:
        assert_all_passed(server.run_vitest("test/integration/rate-limit.test.ts"), at_least=1)
    finally:
        server.stop()
