"""Live documents of the kit between real clients on a real server, and across restarts."""

from __future__ import annotations

import pytest

from tests.clients.harness import KitServer, assert_all_passed

# Each runs a vitest suite against a server process (and may restart it).
pytestmark = pytest.mark.timeout(1800)


def test_live_editing_viewers_presence_and_revocation(kit_server_any: KitServer) -> None:
    assert_all_passed(kit_server_any.run_vitest("test/integration/live.test.ts"), at_least=12)


def test_offline_edits_land_after_sigterm_and_sigkill_restarts(kit_server_any: KitServer) -> None:
    report = kit_server_any.run_vitest("test/integration/restart.test.ts", timeout=1500)
    assert_all_passed(report, at_least=3)
    # The server really went down and came back, three times.
    assert kit_server_any.events.count("stop") == 3 and kit_server_any.events.count("start") == 3
