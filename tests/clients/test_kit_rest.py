"""The kit's typed REST client and sessions against a real server (clients/js/test/integration)."""

from __future__ import annotations

from pathlib import Path

from tests.clients.harness import KitServer, assert_all_passed, run_vitest
from tests.firebase_fakes import FakeFirebase


def test_unit_tests_of_the_kit(kit_built: None) -> None:
    assert_all_passed(run_vitest("test/unit"), at_least=8)


def test_every_rest_operation(kit_server: KitServer) -> None:
    assert_all_passed(kit_server.run_vitest("test/integration/rest.test.ts"), at_least=12)
