"""Two real ``musicplayground serve`` processes on one Postgres and one Redis.

Convergence (and a viewer-only instance), presence across instances, SIGKILL of one
instance, a Redis restart in the middle of editing, permission changes on every instance,
and the refusal of a second process on one SQLite data dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from pycrdt import Map

from loadtest.client import CollabClient
from tests.conftest import TEST_SECRET
from tests.helpers import LOOP, eventually
from tests.redis_process import RedisProcess
from tests.server_process import ServerProcess, free_port, run_cli

PRESENCE_TIMEOUT = 3.0
pytestmark = pytest.mark.timeout(240)  # several server processes each


@pytest.fixture
def cluster_env(postgres_url: str, redis_url: str) -> dict[str, str]:
    """Environment of every instance of one test: one database, one Redis, a prefix of its own."""
    return {
        "DATABASE_URL": postgres_url,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": f"test-{uuid.uuid4().hex[:12]}:",
        "SECRET_KEY": TEST_SECRET,
        "LOG_LEVEL": "INFO",
        "PRESENCE_TIMEOUT_SECONDS": str(PRESENCE_TIMEOUT),
        "SNAPSHOT_INTERVAL_SECONDS": "1",
    }


@contextlib.contextmanager
def instances(env: dict[str, str], tmp_path: Path, count: int = 2) -> Iterator[list[ServerProcess]]:
    servers = [
        ServerProcess({**env, "DATA_DIR": str(tmp_path / f"data{i}")}, log_path=tmp_path / f"server{i}.log")
        for i in range(count)
    ]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            if server.proc is not None and server.proc.poll() is None:
                server.terminate()


def account(url: str) -> tuple[str, dict[str, str]]:
    session = requests.post(f"{url}/api/auth/anonymous", timeout=5).json()
    return session["token"], {"Authorization": f"Bearer {session['token']}"}


def new_loop(url: str, headers: dict[str, str], **fields: Any) -> str:
    resp = requests.post(f"{url}/api/loops", json={**LOOP, **fields}, headers=headers, timeout=5)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


async def get(url: str, headers: dict[str, str] | None = None) -> requests.Response:
    return await http("GET", url, headers=headers or {})


async def http(method: str, url: str, **kwargs: Any) -> requests.Response:
    """A request from a thread: the clients of the test keep running meanwhile."""
    return await asyncio.to_thread(requests.request, method, url, timeout=10, **kwargs)


def keys(client: CollabClient, prefix: str = "") -> set[str]:
    return {k for k in client.doc.get("bench", type=Map).keys() if k.startswith(prefix)}


async def burst(client: CollabClient, prefix: str, count: int, pause: float = 0.005) -> set[str]:
    bench = client.doc.get("bench", type=Map)
    sent = set()
    for i in range(count):
        key = f"{prefix}{i}"
        bench[key] = i
        sent.add(key)
        await asyncio.sleep(pause)
    return sent


async def connected(base_url: str, loop_id: str, token: str, **kwargs: Any) -> CollabClient:
    client = CollabClient(base_url, "loop", loop_id, token=token, **kwargs)
    await client.connect()
    return client


async def test_two_instances_converge_and_a_viewer_only_instance_sees_edits_live(
    cluster_env: dict[str, str], tmp_path: Path
) -> None:
    with instances(cluster_env, tmp_path) as (a, b):
        token, headers = account(a.url)
        viewer_token, viewer_headers = account(b.url)
        loop_id = new_loop(a.url, headers, isPublic=True)
        clients: list[CollabClient] = []
        try:
            editor_a = await connected(a.url, loop_id, token)
            viewer_b = await connected(b.url, loop_id, viewer_token)  # B hosts only a viewer
            clients += [editor_a, viewer_b]
            assert viewer_b.role == "viewer"
            editor_a.doc.get("meta", type=Map)["name"] = "Edited on A"
            await eventually(lambda: viewer_b.doc.get("meta", type=Map).get("name") == "Edited on A")
            resp = await get(f"{b.url}/api/loops/{loop_id}", viewer_headers)
            assert resp.json()["name"] == "Edited on A"

            editor_b = await connected(b.url, loop_id, token)
            clients.append(editor_b)
            sent = await asyncio.gather(burst(editor_a, "a", 300), burst(editor_b, "b", 300))
            everything = sent[0] | sent[1]
            for client in clients:
                await eventually(lambda c=client: keys(c) == everything, timeout=20)  # type: ignore[misc]
            editor_b.doc.get("meta", type=Map)["name"] = "Last word on B"
            await eventually(lambda: editor_a.doc.get("meta", type=Map).get("name") == "Last word on B")

            async def same_everywhere() -> bool:
                bodies = [(await get(f"{s.url}/api/loops/{loop_id}", headers)).json() for s in (a, b)]
                return bodies[0] == bodies[1] and bodies[0]["name"] == "Last word on B"

            for _ in range(150):
                if await same_everywhere():
                    break
                await asyncio.sleep(0.2)
            bodies = [(await get(f"{s.url}/api/loops/{loop_id}", headers)).json() for s in (a, b)]
            assert bodies[0] == bodies[1]
            # A fresh client on either instance gets the whole document.
            for server in (a, b):
                fresh = await connected(server.url, loop_id, token)
                clients.append(fresh)
                assert keys(fresh) == everything
        finally:
            for client in clients:
                await client.close()
        for server in (a, b):
            assert server.terminate() == 0
            assert "Traceback" not in server.log(), server.log()
    # After both flushed on the way down, the row alone holds everything.
    with instances(cluster_env, tmp_path, count=1) as (c,):
        check = await connected(c.url, loop_id, token)
        try:
            assert keys(check) == everything
        finally:
            await check.close()


def connections(members: list[dict[str, Any]] | None) -> int:
    return sum(m["connections"] for m in members or [])


async def test_presence_is_cluster_wide_and_a_killed_instance_loses_nothing_and_vanishes(
    cluster_env: dict[str, str], tmp_path: Path
) -> None:
    with instances(cluster_env, tmp_path) as (a, b):
        token, headers = account(a.url)
        loop_id = new_loop(a.url, headers, isPublic=True)
        carol_token, _ = account(b.url)  # a viewer of the public loop
        clients: list[CollabClient] = []
        try:
            alice = await connected(a.url, loop_id, token)
            bob = await connected(b.url, loop_id, token)  # the same account, in another tab
            carol = await connected(b.url, loop_id, carol_token)
            clients += [alice, bob, carol]
            carol.set_awareness({"user": {"name": "carol"}, "cursor": {"bar": 2, "step": 3}})
            await eventually(lambda: carol.client_id in alice.remote_awareness())
            # Presence on either instance lists the members of both.
            for server in (a, b):
                members = (await get(f"{server.url}/api/loops/{loop_id}/presence", headers)).json()["members"]
                assert (len(members), connections(members)) == (2, 3), members
            await eventually(lambda: connections(alice.presence) == 3)
            # A late joiner on A sees the cursor of a client of B.
            late = await connected(a.url, loop_id, token)
            clients.append(late)
            await eventually(lambda: carol.client_id in late.remote_awareness())

            bursting = asyncio.create_task(burst(bob, "b", 2000, pause=0.02))
            await eventually(lambda: len(keys(alice, "b")) > 50, timeout=20)
            b.kill()
            bursting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await bursting
            alice_got = keys(alice, "b")
            bob_doc = bob.doc
            await bob.close()
            # Bob's client reconnects to the surviving instance with its document.
            bob_again = CollabClient(a.url, "loop", loop_id, token=token, doc=bob_doc)
            await bob_again.connect()
            clients.append(bob_again)
            await eventually(lambda: keys(alice, "b") == keys(bob_again, "b"), timeout=20)
            assert alice_got <= keys(alice, "b")
            # Carol (on the dead instance) and her cursor disappear within the presence timeout.
            vanish = PRESENCE_TIMEOUT * 4
            await eventually(lambda: carol.client_id not in alice.remote_awareness(), timeout=vanish)
            await eventually(lambda: len(alice.presence or []) == 1, timeout=vanish)
            members = (await get(f"{a.url}/api/loops/{loop_id}/presence", headers)).json()["members"]
            assert (len(members), connections(members)) == (1, 3), members
        finally:
            for client in clients:
                await client.close()


async def test_a_redis_restart_mid_editing_loses_nothing(cluster_env: dict[str, str], tmp_path: Path) -> None:
    with RedisProcess() as redis_server:
        env = {**cluster_env, "REDIS_URL": redis_server.url}
        with instances(env, tmp_path) as (a, b):
            token, headers = account(a.url)
            loop_id = new_loop(a.url, headers)
            clients: list[CollabClient] = []
            try:
                on_a = await connected(a.url, loop_id, token)
                on_b = await connected(b.url, loop_id, token)
                clients += [on_a, on_b]
                bursts = [
                    asyncio.create_task(burst(on_a, "a", 600, pause=0.01)),
                    asyncio.create_task(burst(on_b, "b", 600, pause=0.01)),
                ]
                await eventually(lambda: len(keys(on_b, "a")) > 50)
                redis_server.stop()
                await asyncio.sleep(1.5)
                redis_server.start()
                sent = await asyncio.gather(*bursts)
                everything = sent[0] | sent[1]
                for client in clients:
                    await eventually(lambda c=client: keys(c) == everything, timeout=30)  # type: ignore[misc]
                for server in (a, b):
                    await eventually(lambda s=server: "bus restored" in s.log(), timeout=10)  # type: ignore[misc]
                    resp = await get(f"{server.url}/readyz")
                    assert resp.json()["bus"]["state"] == "up"
                    assert resp.json()["bus"]["outages"] >= 1
                assert "connection lost" in a.log() and "regained" in a.log()
            finally:
                for client in clients:
                    await client.close()


async def test_permission_changes_apply_on_every_instance(
    cluster_env: dict[str, str], tmp_path: Path
) -> None:
    with instances(cluster_env, tmp_path) as (a, b):
        owner_token, owner_headers = account(a.url)
        reader_token, reader_headers = account(b.url)
        live_id = new_loop(a.url, owner_headers, isPublic=True)
        quiet_id = new_loop(a.url, owner_headers, isPublic=True)
        clients: list[CollabClient] = []
        try:
            # The REST read cache of B holds a public loop nobody edits ...
            for _ in range(2):
                assert (await get(f"{b.url}/api/loops/{quiet_id}", reader_headers)).status_code == 200
            resp = await http(
                "PATCH", f"{a.url}/api/loops/{quiet_id}", json={"isPublic": False}, headers=owner_headers
            )
            assert resp.status_code == 200

            # ... and stops serving it to others as soon as A made it private.
            async def hidden() -> bool:
                return (await get(f"{b.url}/api/loops/{quiet_id}", reader_headers)).status_code == 404

            for _ in range(40):
                if await hidden():
                    break
                await asyncio.sleep(0.05)
            assert await hidden()
            assert (await get(f"{b.url}/api/loops/{quiet_id}", owner_headers)).status_code == 200

            reader = await connected(b.url, live_id, reader_token)
            owner_on_b = await connected(b.url, live_id, owner_token)
            clients += [reader, owner_on_b]
            assert reader.role == "viewer"
            resp = await http(
                "PATCH", f"{a.url}/api/loops/{live_id}", json={"isPublic": False}, headers=owner_headers
            )
            assert resp.status_code == 200
            await eventually(lambda: not reader.connected)
            assert any(e.get("code") == "access_revoked" for e in reader.errors), reader.errors
            assert owner_on_b.connected

            assert (await http("DELETE", f"{a.url}/api/loops/{live_id}", headers=owner_headers)).ok
            await eventually(lambda: not owner_on_b.connected)
            assert any(e.get("code") == "document_deleted" for e in owner_on_b.errors), owner_on_b.errors
        finally:
            for client in clients:
                await client.close()


def test_a_second_serve_on_one_sqlite_data_dir_is_refused(tmp_path: Path) -> None:
    env = {"DATA_DIR": str(tmp_path / "data"), "SECRET_KEY": TEST_SECRET, "LOG_LEVEL": "WARNING"}
    assert run_cli("db", "upgrade", env=env).returncode == 0
    with ServerProcess(env, log_path=tmp_path / "first.log"):
        second = run_cli("serve", env={**env, "PORT": str(free_port()), "HOST": "127.0.0.1"}, timeout=30)
    assert second.returncode != 0
    assert "already running" in second.stderr and "SQLite serves one instance only" in second.stderr
