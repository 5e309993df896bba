"""Durability and draining with real server processes: SIGKILL mid-burst, SIGTERM with live clients."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import requests
from pycrdt import Map

from loadtest.client import CollabClient
from tests.conftest import TEST_SECRET
from tests.helpers import LOOP, eventually
from tests.server_process import ServerProcess, run_cli


def _prepare(tmp_path: Path) -> dict[str, str]:
    env = {"DATA_DIR": str(tmp_path / "data"), "SECRET_KEY": TEST_SECRET, "LOG_LEVEL": "WARNING"}
    assert run_cli("db", "upgrade", env=env).returncode == 0
    return env


def _account_and_loop(url: str) -> tuple[str, str]:
    session = requests.post(f"{url}/api/auth/anonymous", timeout=5).json()
    headers = {"Authorization": f"Bearer {session['token']}"}
    loop = requests.post(f"{url}/api/loops", json=LOOP, headers=headers, timeout=5).json()
    return session["token"], loop["id"]


def _keys(client: CollabClient, prefix: str) -> set[str]:
    return {k for k in client.doc.get("bench", type=Map).keys() if k.startswith(prefix)}


async def test_sigkill_mid_burst_loses_nothing_anyone_received(tmp_path: Path) -> None:
    env = _prepare(tmp_path)
    server = ServerProcess(env, log_path=tmp_path / "server.log").start()
    clients: list[CollabClient] = []
    try:
        token, loop_id = _account_and_loop(server.url)
        for _ in range(3):
            c = CollabClient(server.url, "loop", loop_id, token=token)
            await c.connect()
            clients.append(c)
        a, b, observer = clients

        async def burst(client: CollabClient, prefix: str) -> None:
            bench = client.doc.get("bench", type=Map)
            for i in range(2000):
                bench[f"{prefix}{i}"] = i
                await asyncio.sleep(0.002)

        bursts = [asyncio.create_task(burst(a, "a")), asyncio.create_task(burst(b, "b"))]
        await eventually(lambda: len(_keys(observer, "")) > 100)
        server.kill()
        for task in bursts:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        received = {
            "observer": _keys(observer, ""),
            "a got from b": _keys(a, "b"),
            "b got from a": _keys(b, "a"),
        }
    finally:
        for c in clients:
            await c.close()
        if server.proc and server.proc.poll() is None:
            server.kill()
    assert len(received["observer"]) > 100

    with ServerProcess(env, log_path=tmp_path / "server.log", port=server.port) as restarted:
        fresh = CollabClient(restarted.url, "loop", loop_id, token=token)
        await fresh.connect()
        try:
            stored = _keys(fresh, "")
        finally:
            await fresh.close()
    for who, keys in received.items():
        missing = keys - stored
        assert not missing, f"{who}: {len(missing)} received updates lost, e.g. {sorted(missing)[:5]}"


async def test_sigterm_flushes_and_clients_reconnect(tmp_path: Path) -> None:
    env = _prepare(tmp_path)
    server = ServerProcess(env, log_path=tmp_path / "server.log").start()
    token, loop_id = _account_and_loop(server.url)
    a = CollabClient(server.url, "loop", loop_id, token=token, reconnection=True)
    b = CollabClient(server.url, "loop", loop_id, token=token, reconnection=True)
    try:
        await a.connect()
        await b.connect()
        a.doc.get("meta", type=Map)["name"] = "Before restart"
        await eventually(lambda: b.doc.get("meta", type=Map).get("name") == "Before restart")

        assert server.terminate(timeout=20) == 0
        await eventually(lambda: a.shutdown_message is not None and not a.connected)
        log = server.log()
        assert "Traceback" not in log, log

        # The document was flushed into its row on the way down: REST on a new process sees it
        # even before anyone opens the document.
        with ServerProcess(env, log_path=tmp_path / "server.log", port=server.port) as restarted:
            headers = {"Authorization": f"Bearer {token}"}
            resp = await asyncio.to_thread(
                requests.get, f"{restarted.url}/api/loops/{loop_id}", headers=headers, timeout=5
            )
            got = resp.json()
            assert got["name"] == "Before restart"
            # Clients reconnect on their own and keep collaborating.
            await eventually(lambda: a.connected and b.connected and a.synced.is_set(), timeout=20)
            a.doc.get("meta", type=Map)["name"] = "After restart"
            await eventually(lambda: b.doc.get("meta", type=Map).get("name") == "After restart")
    finally:
        await a.close()
        await b.close()
