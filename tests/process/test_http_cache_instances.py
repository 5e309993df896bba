"""Two real server processes on one database: a change made on one is never served stale by the other."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.conftest import TEST_SECRET
from tests.helpers import LOOP
from tests.server_process import ServerProcess, run_cli


# Fails today, for a known reason outside HTTP caching: each instance keeps rendered GET bodies in
# its own read cache (realtime/read_cache.py), and nothing tells instance two that instance one
# changed the loop. Issue 7 invalidates that cache across instances through the bus; once it is
# merged this test passes, strict=True turns the XPASS into a failure, and the mark must go.
@pytest.mark.xfail(strict=True, reason="read cache not yet invalidated across instances (issue 7)")
def test_a_change_on_one_instance_is_not_served_stale_by_the_other(tmp_path: Path, database_url: str) -> None:
    env = {
        "DATA_DIR": str(tmp_path / "data"),
        "SECRET_KEY": TEST_SECRET,
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": database_url,
    }
    assert run_cli("db", "upgrade", env=env).returncode == 0
    one = ServerProcess(env, log_path=tmp_path / "a.log").start()
    two = ServerProcess(env, log_path=tmp_path / "b.log")
    try:
        two.start()
        _check_no_stale_reads(one.url, two.url)
    finally:
        for server in (two, one):
            if server.proc is not None:
                server.terminate()


def _check_no_stale_reads(one_url: str, two_url: str) -> None:
    session = requests.post(f"{one_url}/api/auth/anonymous", timeout=5).json()
    owner = {"Authorization": f"Bearer {session['token']}"}
    loop = requests.post(f"{one_url}/api/loops", json={**LOOP, "isPublic": True}, headers=owner, timeout=5)
    assert loop.status_code == 201
    path = f"/api/loops/{loop.json()['id']}"

    first = requests.get(f"{two_url}{path}", timeout=5)
    assert first.status_code == 200 and first.json()["name"] == LOOP["name"]
    etag = first.headers["ETag"]
    assert requests.get(f"{one_url}{path}", timeout=5).headers["ETag"] == etag  # same bytes, same tag
    assert requests.get(f"{two_url}{path}", headers={"If-None-Match": etag}, timeout=5).status_code == 304

    patched = requests.patch(f"{one_url}{path}", json={"name": "Renamed on one"}, headers=owner, timeout=5)
    assert patched.status_code == 200

    after = requests.get(f"{two_url}{path}", headers={"If-None-Match": etag}, timeout=5)
    assert after.status_code == 200, "instance two answered 304 for content changed on instance one"
    assert after.json()["name"] == "Renamed on one"
    assert after.headers["ETag"] != etag
    owned = requests.get(f"{two_url}{path}", headers=owner, timeout=5)
    assert owned.json()["name"] == "Renamed on one"
    listed = requests.get(f"{two_url}/api/loops", headers=owner, timeout=5).json()
    assert [item["name"] for item in listed["loops"]] == ["Renamed on one"]
