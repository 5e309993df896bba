"""Events out with real server processes: a SIGKILL between the change and the delivery loses
nothing (an edit whose content event was never written included: it is told from the update
log); two instances on one Postgres deliver each event once; the inbox works across instances
(REST on one, the live socket on the other)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import requests
import socketio
from pycrdt import Doc
from sqlalchemy import func, select

from events.webhooks import LEASE_MARGIN
from music.kinds import DocKind
from music.writing import apply_content
from storage.database import Database
from storage.document_store import append_updates
from storage.models import Loop, OutboxEvent
from tests.conftest import TEST_SECRET, _truncate_postgres
from tests.events.receiver import Receiver
from tests.helpers import LOOP, eventually
from tests.server_process import ServerProcess, run_cli

pytestmark = pytest.mark.timeout(240)

WEBHOOK_TIMEOUT = "10"  # the default: a loaded machine's receiver may be slow to answer
FAST_EVENTS = {
    "WEBHOOK_ALLOW_PRIVATE_ADDRESSES": "on",
    "WEBHOOK_RETRY_SCHEDULE": "0.3,0.5,1,1,1,1,1,1,1,1",
    "EVENTS_POLL_SECONDS": "0.2",
    "WEBHOOK_TIMEOUT_SECONDS": WEBHOOK_TIMEOUT,
    "LOG_LEVEL": "INFO",
}


def add_endpoint(env: dict[str, str], url: str, *kinds: str) -> tuple[str, str]:
    """``musicplayground webhooks add`` (of ``kinds``; none: all): the endpoint's id and secret."""
    done = run_cli("webhooks", "add", url, *(f"--event={k}" for k in kinds), env=env)
    assert done.returncode == 0, done.stderr
    fields = dict(line.split(": ", 1) for line in done.stdout.strip().splitlines())
    return fields["id"], fields["secret"]


def account(url: str) -> dict[str, Any]:
    session = requests.post(f"{url}/api/auth/anonymous", timeout=5).json()
    return {
        "id": session["user"]["id"],
        "token": session["token"],
        "headers": {"Authorization": f"Bearer {session['token']}"},
    }


async def http_json(method: str, url: str, **kwargs: Any) -> Any:
    """A request from a thread (the test's clients keep running meanwhile); its JSON."""
    resp = await asyncio.to_thread(requests.request, method, url, timeout=5, **kwargs)
    assert resp.ok, resp.text
    return resp.json()


def new_loop(url: str, who: dict[str, Any], **fields: Any) -> str:
    resp = requests.post(f"{url}/api/loops", json={**LOOP, **fields}, headers=who["headers"], timeout=5)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def test_sigkill_between_the_change_and_the_delivery_loses_nothing(tmp_path: Path) -> None:
    env = {**FAST_EVENTS, "DATA_DIR": str(tmp_path / "data"), "SECRET_KEY": TEST_SECRET}
    receiver = Receiver()  # not listening yet: every attempt fails
    server = ServerProcess(env, log_path=tmp_path / "server.log").start()
    try:
        _endpoint_id, secret = add_endpoint(env, receiver.url)
        owner, fan = account(server.url), account(server.url)
        loop_id = new_loop(server.url, owner, isPublic=True)
        resp = requests.post(
            f"{server.url}/api/loops/{loop_id}/comments",
            json={"body": "first!"},
            headers=fan["headers"],
            timeout=5,
        )
        assert resp.status_code == 201
        assert server.kill() == -9  # right after the changes were answered
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.kill()

    async def deliver_after_restart() -> list[dict[str, Any]]:
        await receiver.up()
        try:
            with ServerProcess(env, log_path=tmp_path / "server2.log") as again:
                # An attempt cut short by the kill is sent again once its claim's lease ends.
                lease = float(WEBHOOK_TIMEOUT) + LEASE_MARGIN.total_seconds()
                await eventually(lambda: len(receiver.received) >= 2, timeout=lease + 20)
                await asyncio.sleep(1.0)  # nothing more arrives
                inbox = await http_json("GET", f"{again.url}/api/notifications", headers=owner["headers"])
                assert [e["kind"] for e in inbox["notifications"]] == ["loop.comment_created"]
            return receiver.events(secret=secret)  # every one verified
        finally:
            await receiver.down()

    events = asyncio.run(deliver_after_restart())
    assert {e["type"] for e in events} == {"loop.created", "loop.comment_created"}
    assert len(events) == 2  # each once


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


@pytest.fixture
def cluster_env(postgres_url: str, redis_url: str) -> dict[str, str]:
    asyncio.run(_truncate_postgres(postgres_url))  # no endpoint or event of another test
    return {
        **FAST_EVENTS,
        "DATABASE_URL": postgres_url,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": f"test-{uuid.uuid4().hex[:12]}:",
        "SECRET_KEY": TEST_SECRET,
    }


def test_two_instances_deliver_each_event_once(cluster_env: dict[str, str], tmp_path: Path) -> None:
    async def run() -> None:
        receiver = await Receiver().up()
        try:
            _endpoint_id, secret = add_endpoint(cluster_env, receiver.url)
            with instances(cluster_env, tmp_path) as servers:
                owner = account(servers[0].url)
                made = [
                    await asyncio.to_thread(new_loop, servers[i % 2].url, owner, name=f"loop {i}")
                    for i in range(40)
                ]
                await eventually(lambda: len(receiver.received) >= 40, timeout=30)
                await asyncio.sleep(1.5)  # time for a duplicate to show up
            events = receiver.events(secret=secret)
            created = [e for e in events if e["type"] == "loop.created"]
            assert sorted(e["data"]["loop"]["id"] for e in created) == sorted(made)
            assert len(receiver.received) == 40  # none twice
        finally:
            await receiver.down()

    asyncio.run(run())


def test_notifications_across_two_instances(cluster_env: dict[str, str], tmp_path: Path) -> None:
    async def run() -> None:
        with instances(cluster_env, tmp_path) as (one, two):
            owner, fan = account(one.url), account(two.url)
            loop_id = new_loop(one.url, owner, isPublic=True)
            pushed: list[dict[str, Any]] = []
            sio = socketio.AsyncClient(reconnection=False)
            sio.on("notification", pushed.append, namespace="/notifications")
            await sio.connect(
                one.url,
                namespaces=["/notifications"],
                transports=["websocket"],
                auth={"token": owner["token"]},
            )
            try:
                for body in ("from the other instance", "and again"):
                    resp = await asyncio.to_thread(
                        requests.post,
                        f"{two.url}/api/loops/{loop_id}/comments",
                        json={"body": body},
                        headers=fan["headers"],
                        timeout=5,
                    )
                    assert resp.status_code == 201
                await eventually(lambda: len(pushed) == 2, timeout=15)
            finally:
                await sio.disconnect()
            assert [p["count"] for p in pushed] == [1, 2]
            for server in (one, two):
                inbox = await http_json("GET", f"{server.url}/api/notifications", headers=owner["headers"])
                [entry] = inbox["notifications"]
                assert entry["id"] == pushed[1]["id"] and entry["count"] == 2 and inbox["unreadCount"] == 1
            done = await http_json("POST", f"{two.url}/api/notifications/read", headers=owner["headers"])
            assert done == {"marked": 1}
            inbox = await http_json("GET", f"{one.url}/api/notifications", headers=owner["headers"])
            assert inbox["unreadCount"] == 0

    asyncio.run(run())


# --- content events told from the update log -----------------------------------------------

CONTENT = "loop.content_changed"


def content_events(receiver: Receiver, secret: str, loop_id: str) -> list[dict[str, Any]]:
    """The distinct events about ``loop_id``, as a receiver deduplicating on ``webhook-id`` sees
    them. (A server starting blocks this test's loop, and with it the receiver: an attempt may
    time out and be sent again, with the same id; that is at-least-once delivery, not a
    second event.)"""
    distinct = {e["id"]: e for e in receiver.events(secret=secret) if e["data"]["loop"]["id"] == loop_id}
    return list(distinct.values())


async def edit_into_the_log(database_url: str, loop_id: str, author: str, bpm: int) -> None:
    """A REST edit as the server commits it to the update log (the document's state, changed,
    appended with its author), written while no server runs: its event was never written."""
    async with Database(database_url) as db:
        async with db.session() as session:
            state = await session.scalar(select(Loop.doc_state).where(Loop.id == uuid.UUID(loop_id)))
        assert state is not None
        doc: Doc[Any] = Doc()
        doc.apply_update(state)
        before = doc.get_state()
        apply_content(DocKind.LOOP, doc, {"bpm": bpm}, fields={"bpm"})
        async with db.write_session() as session:
            await append_updates(
                session, [("loop", uuid.UUID(loop_id), doc.get_update(before), uuid.UUID(author))]
            )
        async with db.session() as session:
            written = await session.scalar(
                select(func.count()).select_from(OutboxEvent).where(OutboxEvent.kind == CONTENT)
            )
        assert written == 1  # the live edit's only


@pytest.fixture(params=["sqlite", "postgres"])
def database_env(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[dict[str, str], str]:
    """The servers' environment and the database's URL, on each database."""
    if request.param == "sqlite":
        data = tmp_path / "data"
        env = {**FAST_EVENTS, "DATA_DIR": str(data), "SECRET_KEY": TEST_SECRET}
        return env, f"sqlite+aiosqlite:///{data / 'musicplayground.sqlite3'}"
    env = request.getfixturevalue("cluster_env")
    return {**env, "DATA_DIR": str(tmp_path / "data")}, env["DATABASE_URL"]


def test_an_edit_whose_event_was_never_written_is_told_after_a_restart(
    database_env: tuple[dict[str, str], str], tmp_path: Path
) -> None:
    env, database_url = database_env
    env = {**env, "CONTENT_EVENT_DEBOUNCE_SECONDS": "1"}

    async def run() -> None:
        receiver = await Receiver().up()
        try:
            with ServerProcess(env, log_path=tmp_path / "server1.log") as server:
                _endpoint_id, secret = add_endpoint(env, receiver.url, CONTENT)
                owner = account(server.url)
                told, lost = new_loop(server.url, owner), new_loop(server.url, owner)
                await http_json(
                    "PATCH", f"{server.url}/api/loops/{told}", json={"bpm": 99}, headers=owner["headers"]
                )
                await eventually(lambda: content_events(receiver, secret, told), timeout=15)
            await edit_into_the_log(database_url, lost, owner["id"], bpm=141)
            with ServerProcess(env, log_path=tmp_path / "server2.log") as again:
                await eventually(lambda: content_events(receiver, secret, lost), timeout=30)
                await asyncio.sleep(2.5)  # two more recovery passes: nothing told twice
                fresh = await http_json("GET", f"{again.url}/api/loops/{lost}", headers=owner["headers"])
                assert fresh["bpm"] == 141  # the logged edit is the document's
                metrics = await asyncio.to_thread(requests.get, f"{again.url}/metrics", timeout=5)
                assert "musicplayground_content_events_recovered_total 1.0" in metrics.text
            [recovered] = content_events(receiver, secret, lost)
            assert recovered["data"]["editorIds"] == [owner["id"]]
            assert len(content_events(receiver, secret, told)) == 1  # its live event only
            assert {e["type"] for e in receiver.events()} == {CONTENT}
        finally:
            await receiver.down()

    asyncio.run(run())


def test_sigkill_after_an_edit_before_its_event_is_written(
    cluster_env: dict[str, str], tmp_path: Path
) -> None:
    """Postgres: the outbox is locked by the test, so the edit is committed and answered while
    its event waits; the server is then killed. Two instances come back: one event, once."""
    env = {**cluster_env, "CONTENT_EVENT_DEBOUNCE_SECONDS": "1"}
    plain_url = env["DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://", 1)

    async def run() -> None:
        receiver = await Receiver().up()
        try:
            server = ServerProcess(
                {**env, "DATA_DIR": str(tmp_path / "data")}, log_path=tmp_path / "server.log"
            )
            server.start()
            try:
                _endpoint_id, secret = add_endpoint(env, receiver.url, CONTENT)
                owner = account(server.url)
                loop_id = new_loop(server.url, owner)
                holder = await asyncpg.connect(plain_url)
                try:
                    async with holder.transaction():
                        await holder.execute("LOCK TABLE event_outbox IN EXCLUSIVE MODE")
                        await http_json(
                            "PATCH",
                            f"{server.url}/api/loops/{loop_id}",
                            json={"bpm": 77},
                            headers=owner["headers"],
                        )
                        assert server.kill() == -9  # right after the edit was answered
                        written = await holder.fetchval(
                            "SELECT count(*) FROM event_outbox WHERE kind = $1", CONTENT
                        )
                        assert written == 0  # the live path never wrote it
                finally:
                    await holder.close()
            finally:
                if server.proc is not None and server.proc.poll() is None:
                    server.kill()
            with instances(env, tmp_path) as (one, _two):
                await eventually(lambda: content_events(receiver, secret, loop_id), timeout=30)
                await asyncio.sleep(2.5)  # more recovery passes on both: nothing told twice
                fresh = await http_json("GET", f"{one.url}/api/loops/{loop_id}", headers=owner["headers"])
                assert fresh["bpm"] == 77
            [event] = content_events(receiver, secret, loop_id)
            assert event["data"]["editorIds"] == [owner["id"]]
            assert {e["type"] for e in receiver.events()} == {CONTENT}
        finally:
            await receiver.down()

    asyncio.run(run())
