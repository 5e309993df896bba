"""The public pages with two real ``musicplayground serve`` processes on one Postgres and one
Redis: a page open on one instance follows an edit made on the other, and says so when the
share is revoked there; both instances answer the same page and preview ETags."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.async_api import async_playwright

from loadtest.client import CollabClient
from music.writing import apply_loop_content
from tests.conftest import TEST_SECRET
from tests.helpers import LOOP
from tests.server_process import ServerProcess, free_port

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def two_instances(postgres_url: str, redis_url: str, tmp_path: Path) -> Iterator[list[ServerProcess]]:
    env = {
        "DATABASE_URL": postgres_url,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": f"test-{uuid.uuid4().hex[:12]}:",
        "SECRET_KEY": TEST_SECRET,
    }
    servers = []
    for i in range(2):
        port = free_port()
        own = {"DATA_DIR": str(tmp_path / f"data{i}"), "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}"}
        servers.append(ServerProcess({**env, **own}, log_path=tmp_path / f"server{i}.log", port=port))
    try:
        for server in servers:
            server.start(timeout=90)  # a loaded machine starts slowly
        yield servers
    finally:
        for server in servers:
            if server.proc is not None and server.proc.poll() is None:
                server.terminate()


async def http(method: str, url: str, **kwargs: Any) -> requests.Response:
    """A request from a thread: the page and the sockets keep running meanwhile."""
    return await asyncio.to_thread(requests.request, method, url, timeout=60, **kwargs)


async def until(page: object, expression: str, timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await page.evaluate(expression):  # type: ignore[attr-defined]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout} s: {expression}")
        await asyncio.sleep(0.02)


async def test_a_page_on_one_instance_follows_edits_and_revocation_on_the_other(
    two_instances: list[ServerProcess],
) -> None:
    a, b = two_instances
    session = (await http("POST", f"{b.url}/api/auth/anonymous")).json()
    headers = {"Authorization": f"Bearer {session['token']}"}
    content = {
        **{k: v for k, v in LOOP.items() if k != "isPublic"},
        "length": 1,
        "chordProgression": [],
        "iconSequence": [{"step": 0, "soundId": "drum-kick"}],
    }
    loop = (await http("POST", f"{b.url}/api/loops", json=content, headers=headers)).json()
    shared = await http("POST", f"{b.url}/api/loops/{loop['id']}/share", json={}, headers=headers)
    token = shared.json()["shareToken"]
    pages = [await http("GET", f"{server.url}/preview/{token}.png") for server in (a, b)]
    assert pages[0].headers["ETag"] == pages[1].headers["ETag"] and pages[0].content == pages[1].content
    with tempfile.TemporaryDirectory(prefix="mp-chromium-") as profile:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch_persistent_context(
                profile, executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox"]
            )
            try:
                page = await browser.new_page()
                await page.goto(f"{a.url}/loop/{token}")
                await until(page, "window.musicPage && window.musicPage.state.live === 'live'", 15)
                async with CollabClient(b.url, "loop", loop["id"], token=session["token"]) as editor:
                    edited = {
                        **content,
                        "iconSequence": [*content["iconSequence"], {"step": 8, "soundId": "drum-kick"}],
                    }
                    apply_loop_content(editor.doc, edited, fields=["iconSequence"])
                    await editor.flush()
                    await until(page, "document.querySelectorAll('svg.grid g.steps rect').length === 2", 1)
                revoked = await http("DELETE", f"{b.url}/api/shares/{token}", headers=headers)
                assert revoked.status_code in (200, 204), revoked.text
                await until(page, "document.getElementById('status').textContent.includes('turned off')", 10)
            finally:
                await browser.close()
