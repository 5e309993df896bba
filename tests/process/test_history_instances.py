"""Undo one person and restore a version, on two real instances on one Postgres and one Redis:
each is a new edit that the clients of both instances see live, and the REST reads agree. And
the history packed into compressed chunks reads the same after both instances restart."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pycrdt import Map

from loadtest.client import CollabClient
from music.reading import loop_doc_to_content
from tests.helpers import LOOP, eventually
from tests.process import test_cluster_process as cluster
from tests.process.test_cluster_process import account, connected, http, instances, new_loop

pytestmark = pytest.mark.timeout(240)
cluster_env = cluster.cluster_env  # the fixture: one Postgres, one Redis, a prefix of its own


def content(client: CollabClient) -> dict[str, Any]:
    return loop_doc_to_content(client.doc)


async def test_undo_and_restore_are_seen_live_on_both_instances(
    cluster_env: dict[str, str], tmp_path: Path
) -> None:
    with instances(cluster_env, tmp_path) as (a, b):
        owner_token, owner = account(a.url)
        editor_token, editor = account(b.url)
        me = (
            await http("PATCH", f"{b.url}/api/users/me", json={"username": "history_editor"}, headers=editor)
        ).json()
        loop_id = new_loop(a.url, owner)
        resp = await http(
            "POST",
            f"{a.url}/api/loops/{loop_id}/collaborators",
            json={"username": "history_editor", "role": "editor"},
            headers=owner,
        )
        assert resp.status_code == 201, resp.text
        clients: list[CollabClient] = []
        try:
            on_a = await connected(a.url, loop_id, owner_token)
            on_b = await connected(b.url, loop_id, editor_token)
            clients += [on_a, on_b]
            resp = await http(
                "POST", f"{b.url}/api/loops/{loop_id}/versions", json={"name": "as made"}, headers=editor
            )
            assert resp.status_code == 201, resp.text
            version = resp.json()
            await asyncio.sleep(0.05)
            since = datetime.now(UTC).isoformat()
            await asyncio.sleep(0.05)

            # The editor (on B) changes the tempo and adds a chord; then the owner (on A)
            # changes the first chord, after them.
            on_b.doc.get("meta", type=Map)["bpm"] = 150
            on_b.doc.get("chords", type=Map)["8"] = {"chord": "Am"}
            await eventually(lambda: content(on_a)["bpm"] == 150, timeout=10)
            on_a.doc.get("chords", type=Map)["0"] = {"chord": "Em"}
            await eventually(
                lambda: {"bar": 0, "chord": "Em"} in content(on_b)["chordProgression"], timeout=10
            )

            # Undo the editor's changes, asked on A: both instances' clients see it live.
            resp = await http(
                "POST",
                f"{a.url}/api/loops/{loop_id}/revert",
                json={"userId": me["id"], "since": since},
                headers=owner,
            )
            assert resp.status_code == 200, resp.text
            for client in (on_a, on_b):
                await eventually(lambda c=client: content(c)["bpm"] == LOOP["bpm"], timeout=10)  # type: ignore[misc]
                chords = content(client)["chordProgression"]
                assert {"bar": 8, "chord": "Am"} not in chords
                assert {"bar": 0, "chord": "Em"} in chords  # the owner's later change stays

            # Restore the version, asked on B: the owner's chord goes back too, everywhere.
            resp = await http(
                "POST", f"{b.url}/api/loops/{loop_id}/versions/{version['id']}/restore", headers=editor
            )
            assert resp.status_code == 200, resp.text
            for client in (on_a, on_b):
                await eventually(
                    lambda c=client: (
                        content(c)["chordProgression"] == resp.json()["content"]["chordProgression"]
                    ),  # type: ignore[misc]
                    timeout=10,
                )
            assert content(on_a) == content(on_b)
            for server in (a, b):
                body = (await http("GET", f"{server.url}/api/loops/{loop_id}", headers=owner)).json()
                assert body["chordProgression"] == LOOP["chordProgression"] and body["bpm"] == LOOP["bpm"]

            # The history lists the undo and the restore as edits of the people who made them.
            activity = (await http("GET", f"{b.url}/api/loops/{loop_id}/activity", headers=owner)).json()[
                "activity"
            ]
            assert {entry["userId"] for entry in activity} >= {me["id"]}
        finally:
            for client in clients:
                await client.close()
        for server in (a, b):
            assert server.terminate() == 0
            assert "Traceback" not in server.log(), server.log()


async def test_packed_history_reads_the_same_after_both_instances_restart(
    cluster_env: dict[str, str], tmp_path: Path
) -> None:
    # Versions and packing compressed from minutes and an hour to fractions of a second.
    env = {
        **cluster_env,
        "SNAPSHOT_INTERVAL_SECONDS": "0.2",
        "HISTORY_VERSION_INTERVAL_SECONDS": "0.5",
        "HISTORY_PACK_AFTER_SECONDS": "0.2",
    }
    moments: list[tuple[str, int]] = []
    with instances(env, tmp_path) as (a, b):
        owner_token, owner = account(a.url)
        loop_id = new_loop(a.url, owner)
        on_a = await connected(a.url, loop_id, owner_token)
        on_b = await connected(b.url, loop_id, owner_token)
        try:
            for i in range(700):  # more than one chunk's worth, from both instances
                bpm = 80 + i % 60
                (on_a, on_b)[i % 2].doc.get("meta", type=Map)["bpm"] = bpm
                await asyncio.sleep(0.015)  # within RT_MAX_MESSAGES_PER_SECOND
                if i % 100 == 99:
                    await eventually(
                        lambda b=bpm: content(on_a)["bpm"] == content(on_b)["bpm"] == b, timeout=10
                    )
                    await asyncio.sleep(0.05)
                    moments.append((datetime.now(UTC).isoformat(), bpm))
                    await asyncio.sleep(0.05)
        finally:
            for client in (on_a, on_b):
                await client.close()

        # The last person left: a version, then every entry due is packed, on one instance.
        async def packed() -> int:
            conn = await asyncpg.connect(env["DATABASE_URL"].replace("+asyncpg", ""))
            try:
                return int(
                    await conn.fetchval(
                        "SELECT coalesce(sum(entries), 0) FROM document_history_chunks"
                        " WHERE resource_id = $1",
                        uuid.UUID(loop_id),
                    )
                )
            finally:
                await conn.close()

        for _ in range(200):
            if await packed() >= 500:
                break
            await asyncio.sleep(0.05)
        assert await packed() >= 500
        for server in (a, b):
            assert server.terminate() == 0
            assert "Traceback" not in server.log(), server.log()

    with instances(env, tmp_path) as (a, b):
        for server in (a, b):
            for when, bpm in moments:
                resp = await http(
                    "GET", f"{server.url}/api/loops/{loop_id}/versions/at", params={"t": when}, headers=owner
                )
                assert resp.status_code == 200, resp.text
                assert resp.json()["content"]["bpm"] == bpm
        for server in (a, b):
            assert server.terminate() == 0
            assert "Traceback" not in server.log(), server.log()
