"""A short soak against a real server process: sockets join, edit, churn and leave, rooms are
opened and unloaded, cycle after cycle; then everyone leaves and the server's open file
descriptors, event-loop tasks, sockets and loaded rooms are back at their baseline (read from
its own ``/metrics``). Leaks show as counts, not as time. ``python -m bench.soak`` is the
full-size version (1,000 sockets x 10 minutes, RSS growth)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from pycrdt import Map

from loadtest.client import CollabClient
from tests.conftest import TEST_SECRET
from tests.helpers import LOOP, samples
from tests.server_process import ServerProcess

ROOMS = 4
SOCKETS_PER_ROOM = 3
CYCLES = 3
PING_INTERVAL_S = 25  # python-engineio's default, which the server keeps
# The counts the soak holds to their baseline once everyone has left.
LEAK_COUNTS = {
    "fds": "process_open_fds",
    "tasks": "musicplayground_asyncio_tasks",
    "sockets": "musicplayground_sockets_connected",
    "rooms": "musicplayground_rooms_loaded",
    "pool": "musicplayground_database_pool_connections",
}
# The database's descriptors are left out of the comparison with the baseline and bounded
# instead. The pool opens connections as concurrent sessions need them and keeps them, up to
# its size (Postgres: one socket each; SQLite: the file, its WAL and its shared memory). SQLite
# also keeps a closed connection's file descriptor open, for reuse, while other connections of
# the process hold locks on that file. Neither grows with sockets or rooms.
MAX_DATABASE_FDS = 3 * 32

pytestmark = pytest.mark.timeout(300)


def _database_fds(pid: int, database_url: str, counts: dict[str, int]) -> int:
    """Descriptors of the server ``pid`` open on its database: on SQLite those on the
    database's files, read from /proc; on Postgres the ORM pool's sockets (the fixed asyncpg
    pool is in the baseline already)."""
    if not database_url.startswith("sqlite"):
        return counts["pool"]
    path = database_url.split("///", 1)[1]
    found = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile
            found += os.readlink(f"/proc/{pid}/fd/{fd}").startswith(path)
    return found


def _back_to_baseline(baseline: dict[str, int]) -> Callable[[dict[str, int]], bool]:
    """Everything at its baseline, the database's descriptors aside (bounded)."""

    def rest(counts: dict[str, int]) -> dict[str, int]:
        return {k: v for k, v in counts.items() if k not in ("fds", "pool", "database_fds")}

    def done(counts: dict[str, int]) -> bool:
        return (
            counts["fds"] - counts["database_fds"] == baseline["fds"] - baseline["database_fds"]
            and counts["database_fds"] <= MAX_DATABASE_FDS
            and rest(counts) == rest(baseline)
        )

    return done


async def _counts(server: ServerProcess, database_url: str) -> dict[str, int]:
    resp = await asyncio.to_thread(requests.get, f"{server.url}/metrics", timeout=10)
    assert resp.status_code == 200
    values = samples(resp.text)
    counts = {name: int(values[(metric, ())]) for name, metric in LEAK_COUNTS.items()}
    assert server.proc is not None
    counts["database_fds"] = _database_fds(server.proc.pid, database_url, counts)
    return counts


async def _settle(
    server: ServerProcess, database_url: str, done: object, timeout: float = 20
) -> dict[str, int]:
    """The counts once ``done(counts)`` holds (closing sockets and unloading rooms take a moment)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        counts = await _counts(server, database_url)
        if done(counts) or asyncio.get_running_loop().time() > deadline:  # type: ignore[operator]
            return counts
        await asyncio.sleep(0.1)


def _room_setup(url: str) -> tuple[str, str]:
    token = requests.post(f"{url}/api/auth/anonymous", timeout=10).json()["token"]
    loop = requests.post(
        f"{url}/api/loops", json=LOOP, headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).json()
    return token, loop["id"]


async def _join(url: str, token: str, loop_id: str) -> CollabClient:
    client = CollabClient(url, "loop", loop_id, token=token)
    await client.connect()
    client.set_awareness({"user": {"name": "soak"}})
    return client


async def _edit_and_check_delivery(room: list[CollabClient], tag: str) -> None:
    """Every socket of the room sets one key; every socket ends with every key (none lost)."""
    for i, client in enumerate(room):
        client.doc.get("bench", type=Map)[f"{tag}-{i}"] = i
    keys = {f"{tag}-{i}" for i in range(len(room))}
    for client in room:
        await client.wait_for(_has_keys(client, keys), timeout=10)


def _has_keys(client: CollabClient, keys: set[str]) -> Callable[[], bool]:
    return lambda: keys <= set(client.doc.get("bench", type=Map).keys())


async def test_churning_sockets_and_rooms_leave_no_fds_tasks_or_rooms_behind(
    tmp_path: Path, database_url: str
) -> None:
    env = {
        "DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": database_url,
        "SECRET_KEY": TEST_SECRET,
        "LOG_LEVEL": "WARNING",
        "RATE_LIMITS": "off",
        "ROOM_IDLE_SECONDS": "0.2",  # rooms unload soon after their last socket leaves
    }
    with ServerProcess(env, log_path=tmp_path / "server.log") as server:
        rooms = [await asyncio.to_thread(_room_setup, server.url) for _ in range(ROOMS)]
        # Warm-up: one pass through every path (database pool, lazy imports), then the baseline.
        warm = [await _join(server.url, token, loop_id) for token, loop_id in rooms]
        for client in warm:
            client.doc.get("bench", type=Map)["warm"] = 1
            await client.flush()
            await client.close()
        await _settle(server, database_url, lambda c: c["sockets"] == 0 and c["rooms"] == 0)
        await asyncio.sleep(PING_INTERVAL_S + 2)  # the warm-up sockets' ping timers end (below)
        baseline = await _counts(server, database_url)
        assert baseline["sockets"] == 0 and baseline["rooms"] == 0, baseline

        peak = {"fds": 0, "tasks": 0}
        for cycle in range(CYCLES):
            live = [
                [await _join(server.url, token, loop_id) for _ in range(SOCKETS_PER_ROOM)]
                for token, loop_id in rooms
            ]
            counts = await _counts(server, database_url)
            assert counts["sockets"] == ROOMS * SOCKETS_PER_ROOM and counts["rooms"] == ROOMS
            peak = {k: max(peak[k], counts[k]) for k in peak}
            for r, room in enumerate(live):
                await _edit_and_check_delivery(room, f"c{cycle}r{r}")
            # Churn: one socket of every room reconnects (and gets the room's whole state) ...
            for r, room in enumerate(live):
                await room.pop(0).close()
                room.append(await _join(server.url, *rooms[r]))
                await _edit_and_check_delivery(room, f"c{cycle}r{r}-rejoined")
            # ... and half of the rooms empty out, unload and open again.
            for r in range(0, ROOMS, 2):
                for client in live[r]:
                    await client.close()
                live[r] = []
            counts = await _settle(server, database_url, lambda c: c["rooms"] == ROOMS - ROOMS // 2)
            assert counts["rooms"] == ROOMS - ROOMS // 2, counts
            for r in range(0, ROOMS, 2):
                live[r] = [await _join(server.url, *rooms[r]) for _ in range(SOCKETS_PER_ROOM)]
                await _edit_and_check_delivery(live[r], f"c{cycle}r{r}-reopened")
                everything = {f"c{cycle}r{r}-{i}" for i in range(SOCKETS_PER_ROOM)}
                assert everything <= set(live[r][0].doc.get("bench", type=Map).keys())
            for room in live:
                for client in room:
                    await client.close()

        # A closed socket's Engine.IO ping timer (python-engineio's, one task) ends at its next
        # tick, at most ping_interval (25 s) later: bounded, so waited for, not a leak.
        back = _back_to_baseline(baseline)
        after = await _settle(server, database_url, back, timeout=PING_INTERVAL_S + 15)

    # The load was real: every socket held a descriptor and tasks while connected.
    assert peak["fds"] >= baseline["fds"] + ROOMS * SOCKETS_PER_ROOM, (peak, baseline)
    assert peak["tasks"] > baseline["tasks"], (peak, baseline)
    assert back(after), (after, baseline)
