"""Two real server processes on one database: a change made on one is never served stale by the other."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import requests

from tests.conftest import TEST_SECRET
from tests.helpers import LOOP
from tests.server_process import ServerProcess, run_cli


# Several instances means Postgres + Redis (SQLite is single-instance). Each instance keeps
# rendered GET bodies in its read cache (realtime/read_cache.py); the bus invalidates them on
# every instance when a row changes, so instance two stops serving the old body within one bus
# round trip of the change being stored (the PATCH answers after that store).
def test_a_change_on_one_instance_is_not_served_stale_by_the_other(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    env = {
        "DATA_DIR": str(tmp_path / "data"),
        "SECRET_KEY": TEST_SECRET,
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": postgres_url,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": f"test-{uuid.uuid4()}:",
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

    deadline = time.monotonic() + 1.0  # one bus round trip, with room for a loaded machine
    while True:
        after = requests.get(f"{two_url}{path}", headers={"If-None-Match": etag}, timeout=5)
        if after.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert after.status_code == 200, "instance two answered 304 for content changed on instance one"
    assert after.json()["name"] == "Renamed on one"
    assert after.headers["ETag"] != etag
    owned = requests.get(f"{two_url}{path}", headers=owner, timeout=5)
    assert owned.json()["name"] == "Renamed on one"
    listed = requests.get(f"{two_url}/api/loops", headers=owner, timeout=5).json()
    assert [item["name"] for item in listed["loops"]] == ["Renamed on one"]
